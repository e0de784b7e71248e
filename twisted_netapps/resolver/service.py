"""Service builder for ``resolver``: the recursive, caching name server."""

from __future__ import annotations

import dataclasses
import importlib.resources
import ipaddress
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from twisted_netapps.config import DEFAULT_CONFIG_NAME
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.dns.transport import DNSDatagramProtocol, DNSStreamFactory
from twisted_netapps.errors import ConfigError
from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.handler import ClientACL, RecursiveQueryHandler
from twisted_netapps.resolver.hints import RootHints, load_hints
from twisted_netapps.resolver.iterate import Limits
from twisted_netapps.settings import setting


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> (ip, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    else:
        host, port = text, default_port
    ipaddress.ip_address(host)  # ValueError if not an address
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


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
                parse_server(server)
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
        upstream_port=s.upstream_port, forwarders=[parse_server(f) for f in s.forwarders] or None,
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
    datagrams = DNSDatagramProtocol(handler, context.stats, service="resolver", reactor=context.reactor)
    streams = DNSStreamFactory(handler, context.stats, context.reactor, s.idle_timeout, service="resolver")
    return context.named_service(context.listeners(streams, datagrams))
