"""The same P2P schedule with libtorrent peers (``--with-libtorrent``), for a side-by-side row.

libtorrent runs in this process (its own threads); the sessions are polled.
Every session is on its own loopback address with the same caps as ours, and
announces to our tracker.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted.internet import task

from twisted_netapps.experiment.params import SEED_ADDRESS, peer_address
from twisted_netapps.experiment.results import RunResult

POLL = 0.02
MIN_TIMEOUT = 60.0


def lt_session(lt, interface: str = "127.0.0.1", upload_rate: int = 0, download_rate: int = 0):
    """A libtorrent session on *interface* only, with rate limits that apply on loopback.

    TCP only, like our peers: libtorrent prefers uTP for the connections it makes, and uTP's
    delay-based congestion control halves its rate on loopback (128 MiB, one seed to one
    leecher, measured here: 89 MB/s over TCP, 45 MB/s over uTP).
    """
    settings = {
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "listen_interfaces": f"{interface}:0",
        "outgoing_interfaces": interface,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
        "upload_rate_limit": upload_rate,
        "download_rate_limit": download_rate,
        "announce_to_all_trackers": True,
        "min_announce_interval": 5,
        "stop_tracker_timeout": 1,
    }
    session = lt.session(settings)
    if upload_rate or download_rate:
        # libtorrent exempts local-network peers from rate limits (its "local" peer
        # class); put every address in the global class so the limits apply on loopback.
        rules = lt.ip_filter()
        rules.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        session.set_peer_class_filter(rules)
    return session


def lt_add(lt, session, torrent: Path, save_path: Path, *, seed_mode: bool = False):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(str(torrent))
    params.save_path = str(save_path)
    if seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    return session.add_torrent(params)


async def run_libtorrent_swarm(reactor, *, torrent: Path, seed_dir: Path, work: Path, n: int,
                               uploads: list[float], downloads: list[float], server_upload: float,
                               churn: bool, size: int, bound: float, repeat: int) -> RunResult:
    import libtorrent as lt

    run_dir = work / f"lt-{n}-{repeat}"
    sessions = [lt_session(lt, peer_address(i), int(uploads[i]), int(downloads[i])) for i in range(n)]
    handles = [lt_add(lt, s, torrent, run_dir / f"leecher-{i}") for i, s in enumerate(sessions)]
    seeder = lt_session(lt, SEED_ADDRESS, int(server_upload))
    try:
        seeding = lt_add(lt, seeder, torrent, seed_dir, seed_mode=True)
        started = reactor.seconds()
        deadline = started + max(MIN_TIMEOUT, 10 * bound)
        finish: dict[int, float] = {}
        while len(finish) < n:
            now = reactor.seconds()
            for i, handle in enumerate(handles):
                if i not in finish and handle.status().is_seeding:
                    finish[i] = now - started
                    if churn:  # a leecher that leaves once it has the file
                        sessions[i].remove_torrent(handle)
            if now > deadline:
                raise TimeoutError(f"libtorrent swarm of {n}: {len(finish)} of {n} complete after "
                                   f"{now - started:.0f} s")
            await task.deferLater(reactor, POLL, lambda: None)
        uploaded = seeding.status().total_payload_upload
    finally:
        for s in sessions + [seeder]:
            s.pause()
        del sessions, seeder, handles
        shutil.rmtree(run_dir, ignore_errors=True)
    times = [finish[i] for i in range(n)]
    return RunResult("p2p-libtorrent", n, repeat, bound, max(times), uploaded, size, times)
