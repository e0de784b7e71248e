"""Service builder for ``tracker``: HTTP announce/scrape and the UDP tracker protocol."""

from __future__ import annotations

import dataclasses

from twisted_netapps.bittorrent.tracker.protocol import UdpTrackerProtocol, build_site
from twisted_netapps.bittorrent.tracker.swarm import Tracker
from twisted_netapps.bittorrent.tracker.udp_codec import UdpTracker
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.errors import ConfigError
from twisted_netapps.settings import setting

COUNTERS: dict[str, str] = {
    "announces": "announces answered with a peer list (HTTP and UDP)",
    "scrapes": "scrapes answered",
    "failures": "requests answered with a failure reason",
    "udp_datagrams": "UDP tracker datagrams received",
    "dropped": "UDP datagrams dropped unanswered (too short, not ours)",
    "expired": "peers dropped after missing their announces",
    "torrents": "gauge: torrents with at least one peer",
    "peers": "gauge: peers over all torrents",
}


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(
        ["tcp:6969:interface=127.0.0.1", "udp:6969:interface=127.0.0.1"],
        "HTTP announce/scrape on TCP endpoints; the UDP tracker protocol (BEP 15) on udp: ones",
    )
    interval: int = setting(60, "seconds clients are told to wait between announces", minimum=5)
    min_interval: int = setting(15, "seconds clients must wait at least (min interval)", minimum=1)
    missed_announces: int = setting(
        3, "a peer silent for this many intervals is dropped from its swarm", minimum=1,
    )
    numwant: int = setting(50, "peers handed out when the client does not say (the seeds: ~50, at random)",
                           minimum=0)
    max_numwant: int = setting(200, "most peers handed out in one reply", minimum=1)
    allowed_info_hashes: list[str] = setting(
        [], "hex info-hashes this tracker serves; empty = any torrent",
    )
    trust_ip_param: bool = setting(
        False, "use the announce's ip= parameter instead of the connection's address",
    )
    max_torrents: int = setting(10000, "most torrents tracked at once", minimum=1)
    max_peers_per_torrent: int = setting(10000, "most peers in one swarm", minimum=1)
    request_timeout: float = setting(30.0, "seconds an HTTP connection may stay idle", positive=True)

    def validate(self, where: str) -> None:
        for i, text in enumerate(self.allowed_info_hashes):
            try:
                if len(bytes.fromhex(text)) != 20:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"{where}.allowed_info_hashes[{i}]: not a 40-digit hex info-hash") from None
        if self.min_interval > self.interval:
            raise ConfigError(f"{where}.min_interval: must not exceed interval")



def build(context: ServiceContext):
    s: Settings = context.settings
    tracker = Tracker(
        interval=s.interval,
        min_interval=s.min_interval,
        peer_timeout=s.interval * s.missed_announces,
        default_numwant=s.numwant,
        max_numwant=s.max_numwant,
        allowed={bytes.fromhex(h) for h in s.allowed_info_hashes} or None,
        max_torrents=s.max_torrents,
        max_peers_per_torrent=s.max_peers_per_torrent,
    )
    stats = context.stats
    reactor = context.reactor

    def expire() -> None:
        stats.incr("expired", tracker.expire(reactor.seconds()))
        stats.gauge_add("torrents", len(tracker.torrents) - stats["torrents"])
        stats.gauge_add("peers", tracker.peer_count - stats["peers"])

    site = build_site(tracker, stats, reactor, trust_ip_param=s.trust_ip_param, timeout=s.request_timeout)
    udp = UdpTrackerProtocol(UdpTracker(tracker), stats, reactor)
    loop = PeriodicTask("tracker expiry", min(s.interval, 30), expire, reactor)
    refuse = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    return context.named_service([*context.listeners(site, udp, refuse=refuse), loop])
