"""Service builder for ``resolver``: the recursive, caching name server."""

from __future__ import annotations

import dataclasses
import importlib.resources
import ipaddress
from pathlib import Path

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from twisted_netapps.addresses import parse_host_port
from twisted_netapps.config import DEFAULT_CONFIG_NAME
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.dns.transport import DNSDatagramProtocol, DNSStreamFactory
from twisted_netapps.errors import ConfigError
from twisted_netapps.listeners import is_datagram
from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.handler import ClientACL, RecursiveQueryHandler
from twisted_netapps.resolver.hints import RootHints, load_hints
from twisted_netapps.resolver.iterate import Limits, Resolution
from twisted_netapps.resolver.upstream import ResolutionRunner
from twisted_netapps.settings import setting


# What this service's counters count (twisted_netapps.stats; netapps stats --explain).
COUNTERS: dict[str, str] = {
    "requests": "DNS queries received from clients over UDP and TCP",
    "errors": "queries that failed inside the resolver (answered SERVFAIL), replies not sent",
    "dropped": "client messages not answered (responses, fragments)",
    "cache_hits": "queries answered from the cache",
    "cache_misses": "queries that needed a resolution (iterating or forwarding)",
    "coalesced": "queries that joined a resolution of the same question already running",
    "refused": "queries answered REFUSED (client not in allow, no recursion desired, ...)",
    "formerr": "queries answered FORMERR (malformed)",
    "servfail": "resolutions that ended in SERVFAIL (time budget, lame servers, loops)",
    "overload_servfail": "queries answered SERVFAIL at once: max_resolutions were running",
    "truncated": "UDP replies sent with TC set (the client retries over TCP)",
    "upstream_queries": "queries sent to authoritative servers or forwarders",
    "upstream_udp": "upstream queries over UDP",
    "upstream_tcp": "upstream queries over TCP (after TC)",
    "upstream_ignored": "upstream replies ignored: wrong source, ID or question (spoofing resistance)",
    "send_failures": "UDP replies the network refused to send (also counted in errors)",
    "tcp_idle_timeouts": "TCP connections closed after idle_timeout",
}

@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(
        ["tcp:5301:interface=127.0.0.1", "udp:5301:interface=127.0.0.1"],
        "TCP endpoint strings and udp:PORT[:interface=ADDR] listeners",
    )
    allow: list[str] = setting(
        ["127.0.0.0/8", "::1/128"], "client networks allowed to recurse; others get REFUSED"
    )
    root_hints: str = setting(
        "named.root",
        "root hints file (named.root format); relative paths: the config file's directory, then the packaged data",
    )
    upstream_port: int = setting(
        53, "port the authoritative servers are queried on (the demo hierarchy uses 5300)", minimum=1, maximum=65535
    )
    forwarders: list[str] = setting(
        [], "forwarding mode: send every query to these resolvers (IP or IP:PORT) instead of iterating"
    )
    cache_max_entries: int = setting(
        100_000, "RRsets (and, separately, prepared answers) kept; LRU beyond", minimum=1
    )
    cache_min_ttl: int = setting(0, "TTLs below this are raised to it", minimum=0)
    cache_max_ttl: int = setting(86_400, "TTLs above this are lowered to it")
    negative_max_ttl: int = setting(
        3_600, "longest time an NXDOMAIN/NODATA answer is cached (RFC 2308)", minimum=0
    )
    failure_ttl: int = setting(
        1, "seconds a SERVFAIL is remembered for the same question (RFC 9520)", minimum=0
    )
    server_timeout: float = setting(
        1.5, "seconds to wait for one upstream server before trying the next", positive=True
    )
    time_budget: float = setting(10.0, "seconds for a whole resolution before SERVFAIL", positive=True)
    max_upstream_queries: int = setting(64, "upstream queries per client question before SERVFAIL", minimum=1)
    max_resolutions: int = setting(
        1000, "distinct questions resolved at once; beyond, new ones get SERVFAIL at once", minimum=1
    )
    ipv6_servers: bool = setting(False, "also query name servers over IPv6 (needs IPv6 connectivity)")
    max_udp_payload: int = setting(
        1232, "our EDNS UDP payload size; larger answers get TC", minimum=512, maximum=65535
    )
    idle_timeout: float = setting(30.0, "seconds a client TCP connection may stay silent", positive=True)
    log_queries: bool = setting(False, "log every resolution (cache misses) at info")

    def validate(self, where: str) -> None:
        for i, network in enumerate(self.allow):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"{where}.allow[{i}]: not a network: {network!r}") from None
        for i, server in enumerate(self.forwarders):
            try:
                parse_host_port(server, 53)
            except ValueError as e:
                raise ConfigError(f"{where}.forwarders[{i}]: bad server {server!r}: {e}") from None
        if self.cache_min_ttl > self.cache_max_ttl:
            raise ConfigError(f"{where}.cache_min_ttl: must not exceed cache_max_ttl")


def packaged_data(name: str) -> Path:
    return Path(str(importlib.resources.files("twisted_netapps").joinpath("data", name)))


def hints_path(setting_value: str, config_source: str) -> Path:
    """Where the hints file is: absolute, or next to the config file, or packaged."""
    path = Path(setting_value).expanduser()
    if path.is_absolute():
        return path
    if config_source != DEFAULT_CONFIG_NAME:
        beside = Path(config_source).parent / path
        if beside.exists():
            return beside
    return packaged_data(str(path))


def build_handler(s: Settings, reactor, stats, hints: RootHints) -> RecursiveQueryHandler:
    cache = ResolverCache(
        reactor.seconds,
        max_entries=s.cache_max_entries,
        max_answers=s.cache_max_entries,
        min_ttl=s.cache_min_ttl,
        max_ttl=s.cache_max_ttl,
        negative_max_ttl=s.negative_max_ttl,
    )
    limits = Limits(
        max_queries=s.max_upstream_queries,
        time_budget=s.time_budget,
        server_timeout=s.server_timeout,
        edns_payload=s.max_udp_payload,
        ipv6=s.ipv6_servers,
    )
    return RecursiveQueryHandler(
        cache=cache, hints=hints, reactor=reactor, stats=stats, acl=ClientACL(s.allow), limits=limits,
        upstream_port=s.upstream_port, forwarders=[parse_host_port(f, 53) for f in s.forwarders] or None,
        max_udp_payload=s.max_udp_payload, failure_ttl=s.failure_ttl, log_queries=s.log_queries,
        max_resolutions=s.max_resolutions,
    )


COMMON_TYPES = ("A", "AAAA", "NS", "SOA", "CNAME", "DNAME", "MX", "TXT", "PTR", "SRV", "CAA", "DS", "OPT")


def preload_rdata_classes() -> None:
    """Import dnspython's per-type modules now, not during the first lookups.

    dnspython imports each record type's module the first time it decodes
    one; done lazily, the first resolution after start pays several ms.
    """
    for name in COMMON_TYPES:
        dns.rdata.get_rdata_class(dns.rdataclass.IN, dns.rdatatype.from_text(name))


def build(context: ServiceContext):
    s: Settings = context.settings
    preload_rdata_classes()
    hints = load_hints(hints_path(s.root_hints, context.config.source))
    handler = build_handler(s, context.reactor, context.stats, hints)
    handler.recent = context.recent
    streams = DNSStreamFactory(handler, context.stats, context.reactor, s.idle_timeout, service="resolver")
    context.views.add("cache", "Cache (newest first, TTLs counting down)", handler.cache.entries)
    context.views.add("trace", "Trace a name (like dig +trace)",
                      lambda name="", type="A": live_trace(name, type, hints, s, context.reactor),
                      params=("name", "type"))
    children = []
    for endpoint in s.listen:
        # A DatagramProtocol belongs to one port (its transport): a fresh one per
        # UDP listener, or replies would leave through the last port bound.
        datagrams = (DNSDatagramProtocol(handler, context.stats, service="resolver", reactor=context.reactor)
                     if is_datagram(endpoint) else None)
        children.extend(context.listeners(streams, datagrams, endpoints=[endpoint]))
    return context.named_service(children)


def live_trace(name: str, rdtype: str, hints: RootHints, s: Settings, reactor):
    """Walk *name* from the root hints with an empty cache, on the reactor; a Deferred of the steps."""
    try:
        qname = dns.name.from_text(name.strip() or ".")
        qtype = dns.rdatatype.from_text(rdtype.strip() or "A")
    except dns.exception.DNSException as e:
        raise ValueError(f"bad question {name!r} {rdtype!r}: {e}") from None
    cache = ResolverCache(reactor.seconds)
    limits = Limits(max_queries=s.max_upstream_queries, time_budget=s.time_budget,
                    server_timeout=s.server_timeout, edns_payload=s.max_udp_payload, ipv6=s.ipv6_servers)
    resolution = Resolution(qname, qtype, cache=cache, hints=hints, clock=reactor.seconds,
                            upstream_port=s.upstream_port, limits=limits, details=True)

    def steps(result) -> list[dict]:
        rows = [{"step": i, "depth": step.depth, "zone": str(step.zone), "server": f"{step.server}:{step.port}",
                 "transport": "tcp" if step.over_tcp else "udp", "ms": round(step.rtt * 1000, 1),
                 "question": f"{step.qname} {dns.rdatatype.to_text(step.qtype)}",
                 "outcome": step.outcome, "detail": step.detail}
                for i, step in enumerate(resolution.steps, 1)]
        rows.append({"step": "result", "outcome": dns.rcode.to_text(result.rcode),
                     "detail": " | ".join(r.to_text() for r in result.answer + result.authority)[:2000]})
        return rows

    return ResolutionRunner(resolution, reactor).run().addCallback(steps)
