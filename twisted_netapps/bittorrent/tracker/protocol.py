"""Twisted adapters for the tracker: a twisted.web resource (HTTP) and a datagram protocol (UDP)."""

from __future__ import annotations

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.web import resource, server

from twisted_netapps.bittorrent.tracker import http_codec
from twisted_netapps.bittorrent.tracker.swarm import Tracker, TrackerRefusal
from twisted_netapps.bittorrent.tracker.udp_codec import UdpTracker
from twisted_netapps.stats import ServiceStats

log = Logger(namespace="netapps.tracker")


def _client_ip(request) -> str:
    address = request.getClientAddress()
    return getattr(address, "host", "") or ""


class _TrackerPage(resource.Resource):
    isLeaf = True

    def __init__(self, tracker: Tracker, stats: ServiceStats, clock, *, trust_ip_param: bool) -> None:
        super().__init__()
        self.tracker = tracker
        self.stats = stats
        self.clock = clock
        self.trust_ip_param = trust_ip_param

    def render_GET(self, request) -> bytes:
        self.stats.incr("requests")
        request.setHeader(b"content-type", b"text/plain")
        query = request.uri.partition(b"?")[2]
        try:
            body = self.answer(query, _client_ip(request))
        except TrackerRefusal as e:
            self.stats.incr("failures")
            log.info("tracker: refused {path} from {peer}: {reason}",
                     path=request.path.decode("latin-1"), peer=_client_ip(request), reason=e.reason)
            body = http_codec.encode_failure(e.reason)
        self.stats.incr("bytes_out", len(body))
        return body

    def answer(self, query: bytes, ip: str) -> bytes:
        raise NotImplementedError


class AnnouncePage(_TrackerPage):
    def answer(self, query: bytes, ip: str) -> bytes:
        req = http_codec.parse_announce(query, ip, trust_ip_param=self.trust_ip_param)
        reply = self.tracker.announce(req, self.clock.seconds())
        self.stats.incr("announces")
        return http_codec.encode_announce(reply, req)


class ScrapePage(_TrackerPage):
    def answer(self, query: bytes, ip: str) -> bytes:
        hashes = http_codec.parse_scrape(query)
        self.stats.incr("scrapes")
        return http_codec.encode_scrape(self.tracker.scrape(hashes), self.tracker.min_interval)


class _Root(resource.Resource):
    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"twisted-netapps tracker: /announce and /scrape\n"


class TrackerSite(server.Site):
    """A Site that leaves request logging to the tracker's own counters."""

    noisy = False

    def log(self, request) -> None:
        pass


def build_site(tracker: Tracker, stats: ServiceStats, clock, *, trust_ip_param: bool, timeout: float) -> TrackerSite:
    root = _Root()
    root.putChild(b"", root)
    root.putChild(b"announce", AnnouncePage(tracker, stats, clock, trust_ip_param=trust_ip_param))
    root.putChild(b"scrape", ScrapePage(tracker, stats, clock, trust_ip_param=trust_ip_param))
    site = TrackerSite(root, timeout=timeout)
    site.displayTracebacks = False
    return site


class UdpTrackerProtocol(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, core: UdpTracker, stats: ServiceStats, clock) -> None:
        self.core = core
        self.stats = stats
        self.clock = clock

    def datagramReceived(self, data: bytes, addr) -> None:
        self.stats.incr("udp_datagrams")
        self.stats.incr("bytes_in", len(data))
        reply = self.core.handle(data, addr[0], addr[1], self.clock.seconds())
        if reply is None:
            self.stats.incr("dropped")
            return
        try:
            self.transport.write(reply, addr)
        except OSError as e:
            log.info("tracker: cannot answer {peer}: {error}", peer=addr[0], error=e)
            return
        self.stats.incr("bytes_out", len(reply))
