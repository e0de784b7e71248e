"""Service builder for ``proxy``: the caching proxy.

Config shape (``[proxy]`` in netapps.toml)::

    [proxy]
    listen = ["tcp:3128:interface=127.0.0.1"]
    mode = "forward"                      # or "reverse", in front of `origin`
    origin = "http://127.0.0.1:8080"
    allowed_ports = [80, 443]            # and the web service's port (allow_web_ports)
    cache_size = 268435456
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket

from twisted.application import service
from twisted.logger import Logger

from twisted_netapps.addresses import parse_host_port
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ConfigError
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.listeners import is_datagram, parse_datagram
from twisted_netapps.proxy.engine import Engine, Limits
from twisted_netapps.proxy.policy.freshness import HeuristicRule
from twisted_netapps.proxy.server import ProxyFactory
from twisted_netapps.proxy.store.cache import Cache
from twisted_netapps.proxy.store.disk import DiskStore
from twisted_netapps.proxy.store.memory import MemoryBodies
from twisted_netapps.http.targets import Target, parse_absolute_target
from twisted_netapps.proxy.upstream import Connector, OriginPool
from twisted_netapps.settings import setting

log = Logger(namespace="netapps.proxy")

MiB = 1024 * 1024

COUNTERS: dict[str, str] = {
    "hits": "GET/HEAD answered from the store (including collapsed requests and stale-if-error)",
    "misses": "GET/HEAD answered by the origin",
    "revalidations": "stored responses freshened by a 304 (or a matching HEAD)",
    "collapsed": "requests that joined another request's origin fetch instead of sending their own",
    "stored": "responses written to the store",
    "store_skipped": "storable responses not stored because the disk could not keep up",
    "invalidations": "stored responses removed after unsafe requests",
    "bytes_from_cache": "body bytes served from the store",
    "bytes_from_origin": "body bytes of GET/HEAD responses relayed from origins",
    "origin_errors": "requests answered 5xx by the proxy (origin unreachable, bad response, timeout)",
    "timeouts": "client connections closed by a header, body or send deadline",
    "tunnels": "CONNECT tunnels established",
    "refused": "connections from networks outside proxy.allow",
    "store_bytes": "gauge: bytes the store holds",
    "store_objects": "gauge: responses the store holds",
    "hit_ratio_percent": "gauge: hits / (hits + misses), in percent",
}


TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\ntoo many connections\n"
)


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    # A browser opens a few dozen connections to its proxy: more than the
    # frame's default per-address cap.
    max_connections_per_address: int = setting(
        64, "concurrent connections from one client address per listener", minimum=1
    )
    listen: list[str] = setting(["tcp:3128:interface=127.0.0.1"], "TCP endpoint strings")
    mode: str = setting("forward", "forward (clients ask for http://host/... URIs) or reverse (one origin)",
                        choices=("forward", "reverse"))
    origin: str = setting("http://127.0.0.1:8080", "reverse mode: the origin every request goes to")
    allowed_ports: list[int] = setting([80, 443], "forward mode: ports the proxy connects to (CONNECT too)")
    allow_web_ports: bool = setting(True, "forward mode: also the ports the web service is configured to listen on")
    allow: list[str] = setting(["127.0.0.0/8", "::1/128"], "client networks allowed to use the proxy")
    cache_size: int = setting(256 * MiB, "bytes the on-disk store may hold (LRU eviction beyond)", minimum=0)
    max_object_size: int = setting(64 * MiB, "largest response stored (larger ones are only relayed)", minimum=0)
    memory_cache_size: int = setting(64 * MiB, "bytes of hot bodies kept in memory", minimum=0)
    memory_object_size: int = setting(MiB, "largest body kept in memory (larger ones stream from disk)", minimum=0)
    heuristic_fraction: float = setting(0.1, "heuristic freshness: this fraction of (Date - Last-Modified)",
                                        minimum=0.0, maximum=1.0)
    heuristic_max: float = setting(86400.0, "heuristic freshness: at most this many seconds", minimum=0.0)
    dns: str = setting("system", "name resolution: system, resolver (the daemon's resolver service) or ADDR:PORT")
    via: str = setting("", "our pseudonym in Via (default: netapps- and a hash of host and data dir)")
    max_request_line: int = setting(8192, "longest request line (414 beyond)", minimum=64)
    max_header_size: int = setting(65536, "largest request header section in bytes (431 beyond)", minimum=256)
    max_header_fields: int = setting(100, "most header fields in a request (431 beyond)", minimum=1)
    header_timeout: float = setting(20.0, "seconds for a whole request head to arrive (408 beyond)", positive=True)
    idle_timeout: float = setting(60.0, "seconds a keep-alive connection may wait for its next request",
                                  positive=True)
    body_timeout: float = setting(60.0, "seconds a request body may stall", positive=True)
    send_timeout: float = setting(120.0, "seconds a client may stop reading a response", positive=True)
    connect_timeout: float = setting(10.0, "seconds to connect to an origin", positive=True)
    origin_timeout: float = setting(60.0, "seconds an origin may take to answer (or stall mid-body)",
                                    positive=True)
    origin_idle_timeout: float = setting(15.0, "seconds an idle pooled origin connection is kept", positive=True)
    max_idle_per_origin: int = setting(
        128, "idle pooled connections kept per origin (as many as requests in flight to it, or they churn)",
        minimum=0,
    )
    tunnel_idle_timeout: float = setting(300.0, "seconds a CONNECT tunnel may stay silent", positive=True)
    log_requests: bool = setting(False, "log one line per request at info")

    def validate(self, where: str) -> None:
        if self.mode == "reverse":
            reverse_origin(self.origin, f"{where}.origin")
        for i, port in enumerate(self.allowed_ports):
            if not 0 < port < 65536:
                raise ConfigError(f"{where}.allowed_ports[{i}]: not a port number")
        if self.dns not in ("system", "resolver"):
            parse_dns_server(self.dns, f"{where}.dns")
        if self.via and not self.via.replace("-", "").replace(".", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}.via: use letters, digits, '-', '.' and '_' only")


def reverse_origin(url: str, where: str) -> Target:
    try:
        target = parse_absolute_target(url.encode("ascii"))
    except (ProtocolError, UnicodeError) as e:
        raise ConfigError(f"{where}: {url!r} is not an http:// URL ({e})") from None
    if target.path != b"/":
        raise ConfigError(f"{where}: the origin is scheme://host[:port] only, without a path")
    return target


def parse_dns_server(text: str, where: str) -> tuple[str, int]:
    try:
        return parse_host_port(text, 53)
    except ValueError as e:
        raise ConfigError(f"{where}: expected system, resolver or ADDR[:PORT]: {e}") from None


def resolver_address(context: ServiceContext) -> tuple[str, int]:
    """Where the daemon's own resolver service listens (its first UDP listener)."""
    resolver = context.config.services.get("resolver")
    for description in getattr(resolver, "listen", []):
        if is_datagram(description):
            spec = parse_datagram(description, "resolver.listen")
            return spec.interface or "127.0.0.1", spec.port
    raise ConfigError(f"{context.config.source}: proxy.dns = \"resolver\" but the resolver has no UDP listener")


_ENDPOINT_PORT = re.compile(r"^(?:tcp6?|ssl):(?:port=)?(\d+)(?::|$)")


def web_ports(context: ServiceContext) -> set[int]:
    """The ports the daemon's web service is configured on (so the default lets the proxy reach it)."""
    web = context.config.services.get("web")
    ports = set()
    for endpoint in getattr(web, "listen", []):
        match = _ENDPOINT_PORT.match(endpoint)
        if match and int(match.group(1)):
            ports.add(int(match.group(1)))
    return ports


def default_pseudonym(context: ServiceContext) -> bytes:
    digest = hashlib.sha1(f"{socket.gethostname()}:{context.data_dir.resolve()}".encode()).hexdigest()
    return f"netapps-{digest[:8]}".encode("ascii")


class ProxyService(service.MultiService):
    """Loads the store's index at start; closes connections at stop."""

    def __init__(self, engine: Engine, factory: ProxyFactory) -> None:
        super().__init__()
        self.engine = engine
        self.factory = factory

    def startService(self) -> None:
        super().startService()
        d = self.engine.cache.load()

        def loaded(count: int) -> None:
            self.engine.publish_store_size()
            log.info("proxy: store loaded: {count} responses, {size} bytes ({removed} damaged files removed)",
                     count=count, size=self.engine.cache.size, removed=self.engine.cache.corrupt_removed)

        d.addCallbacks(loaded, lambda f: log.error("proxy: cannot load the store ({kind}: {error}); starting empty",
                                                   kind=f.type.__name__, error=f.getErrorMessage()))

    def stopService(self):
        d = super().stopService()
        self.factory.close_all()
        self.engine.pool.close_all()
        # Small entries waiting for their batch are written before the disk pool stops.
        d.addCallback(lambda _: self.engine.cache.disk.segments.drain())
        return d


def build(context: ServiceContext):
    s: Settings = context.settings
    reactor = context.reactor
    heuristic = HeuristicRule(s.heuristic_fraction, s.heuristic_max)
    disk = DiskStore(context.subdir("proxy", "cache"), context.pools.disk, reactor, heuristic)
    cache = Cache(disk, MemoryBodies(s.memory_cache_size, s.memory_object_size), s.cache_size, s.max_object_size)
    if s.dns == "system":
        dns_server = None
    elif s.dns == "resolver":
        dns_server = resolver_address(context)
    else:
        dns_server = parse_dns_server(s.dns, "proxy.dns")
    connector = Connector(reactor, connect_timeout=s.connect_timeout, dns_server=dns_server)
    pool = OriginPool(reactor, connector, max_idle=s.max_idle_per_origin, idle_timeout=s.origin_idle_timeout,
                      response_timeout=s.origin_timeout)
    limits = Limits(
        max_request_line=s.max_request_line, max_field_section=s.max_header_size, max_fields=s.max_header_fields,
        header_timeout=s.header_timeout, idle_timeout=s.idle_timeout, body_timeout=s.body_timeout,
        send_timeout=s.send_timeout, tunnel_idle_timeout=s.tunnel_idle_timeout,
    )
    engine = Engine(
        reactor=reactor, cache=cache, pool=pool, stats=context.stats,
        via=s.via.encode("ascii") if s.via else default_pseudonym(context),
        reverse_origin=reverse_origin(s.origin, "proxy.origin") if s.mode == "reverse" else None,
        allowed_ports=frozenset(s.allowed_ports) | (web_ports(context) if s.allow_web_ports else set()),
        heuristic=heuristic, max_object_size=s.max_object_size,
        limits=limits, log_requests=s.log_requests, recent=context.recent,
    )
    for name, meaning in COUNTERS.items():
        if meaning.startswith("gauge:"):
            context.stats.gauge_add(name, 0)
        else:
            context.stats.incr(name, 0)
    context.views.add("cache", "Cache (most recently used first; fresh_for < 0: stale)", engine.cache_view)
    context.views.add("fetches", "Origin fetches in progress (collapsed requests wait on one)", engine.fetches_view)
    factory = ProxyFactory(engine, s.allow)
    parent = ProxyService(engine, factory)
    parent.setName(context.name)
    for child in context.listeners(factory, refuse=TOO_MANY_CONNECTIONS):
        child.setServiceParent(parent)
    return parent
