"""Service builder for ``dns``: the authoritative server.

Config shape (``[dns]`` in netapps.toml)::

    [dns]
    listen = ["tcp:5300:interface=127.0.0.1", "udp:5300:interface=127.0.0.1"]  # every zone

    [[dns.zones]]
    name = "example.test."
    file = "zones/example.test.zone"        # relative: to the config file's directory
    allow_transfer = ["127.0.0.0/8"]        # AXFR clients (default: nobody)
    notify = ["127.0.0.1:5399"]             # secondaries to NOTIFY on serial change

    [[dns.views]]                           # zones bound to listeners
    listen = ["tcp:5300:interface=127.0.0.4", "udp:5300:interface=127.0.0.4"]
    zones = ["example.test."]
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from pathlib import Path

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

from twisted.logger import Logger

from twisted_netapps.config import DEFAULT_CONFIG_NAME
from twisted_netapps import dnswire
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.dns.responder import DEFAULT_UDP_PAYLOAD, Counters, Responder
from twisted_netapps.dns.transport import DNSDatagramProtocol, DNSStreamFactory, peer_text
from twisted_netapps.dns.zoneset import ZoneSet, ZoneSpec, parse_notify_targets, parse_transfer_acl
from twisted_netapps.errors import ConfigError
from twisted_netapps.listeners import is_datagram
from twisted_netapps.settings import setting

log = Logger(namespace="netapps.dns")


@dataclasses.dataclass(frozen=True)
class ZoneSettings:
    name: str = setting("", "the zone's origin, e.g. \"example.test.\" (\".\" is the root)")
    file: str = setting("", "BIND master file; a relative path is taken from the config file's directory")
    allow_transfer: list[str] = setting([], "networks allowed to AXFR the zone over TCP (default: none)")
    notify: list[str] = setting([], "secondaries (ADDRESS[:PORT]) sent a NOTIFY when the serial changes")

    def validate(self, where: str) -> None:
        if not self.name:
            raise ConfigError(f"{where}.name: required")
        try:
            dns.name.from_text(self.name)
        except dns.exception.DNSException as e:
            raise ConfigError(f"{where}.name: {self.name!r} is not a domain name: {e}") from None
        if not self.file:
            raise ConfigError(f"{where}.file: required")
        parse_transfer_acl(self.allow_transfer, f"{where}.allow_transfer")
        parse_notify_targets(self.notify, f"{where}.notify")


@dataclasses.dataclass(frozen=True)
class ViewSettings:
    name: str = setting("", "the view's listener name, for --listen dns.NAME=... (default: view<N>)")
    listen: list[str] = setting([], "listeners of this view")
    zones: list[str] = setting([], "names of the zones (from [[dns.zones]]) this view serves")


def _view_name(index: int, name: object) -> str:
    return name if isinstance(name, str) and name else f"view{index}"


# What this service's counters count (twisted_netapps.stats; netapps stats --explain).
COUNTERS: dict[str, str] = {
    "requests": "DNS messages received over UDP and TCP",
    "errors": "queries answered SERVFAIL by a handler failure, bad TCP framing, replies not sent",
    "dropped": "messages not answered: responses, fragments shorter than a header, unanswerable input",
    "full_path": "queries answered by the full parser and zone lookup (the rest came from prepared replies)",
    "built_noerror": "replies built with rcode NOERROR (answers, referrals, NODATA); prepared replies reused are not counted",
    "built_nxdomain": "replies built with rcode NXDOMAIN",
    "built_refused": "replies built with rcode REFUSED (outside our zones, refused transfers)",
    "built_formerr": "replies built with rcode FORMERR (malformed queries)",
    "built_notimp": "replies built with rcode NOTIMP (opcodes we do not implement)",
    "built_servfail": "replies built with rcode SERVFAIL",
    "built_badvers": "replies built with extended rcode BADVERS (EDNS version other than 0)",
    "built_notauth": "replies built with rcode NOTAUTH (NOTIFY for a zone we do not serve)",
    "transfers": "zone transfers (AXFR) sent",
    "send_failures": "UDP replies the network refused to send (also counted in errors)",
    "tcp_idle_timeouts": "TCP connections closed after idle_timeout",
    "zone_reloads": "zones reloaded after their file changed or on SIGHUP",
    "zone_errors": "zone reloads that failed (the previous version kept serving)",
    "notify_sent": "NOTIFY messages sent to secondaries",
    "notify_acked": "NOTIFY messages a secondary acknowledged",
    "notify_failed": "NOTIFY messages given up on after retries",
}

@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(
        ["tcp:5300:interface=127.0.0.1", "udp:5300:interface=127.0.0.1"],
        "listeners serving every zone (TCP endpoint strings and udp:PORT[:interface=ADDR])",
    )
    zones: list[ZoneSettings] = setting([], "the zones served ([[dns.zones]] tables)")
    views: list[ViewSettings] = setting([], "listeners serving only some zones ([[dns.views]] tables)")
    max_udp_payload: int = setting(
        DEFAULT_UDP_PAYLOAD, "largest UDP reply with EDNS (clients ask; this caps)", minimum=512, maximum=65535
    )
    idle_timeout: float = setting(30.0, "seconds a TCP connection may stay idle", positive=True)
    reload_interval: float = setting(
        2.0, "seconds between zone file change checks (0: only on SIGHUP)", minimum=0
    )
    max_prepared: int = setting(20000, "prepared replies kept per view (the hot-path cache)", minimum=0)
    notify_source: str = setting("127.0.0.1", "address NOTIFY messages are sent from")
    log_queries: bool = setting(False, "log every query and its rcode at info (costs throughput)")

    # Views name zones: a --set dns.zones=... drops the base's views with the
    # zones they served (twisted_netapps.config).
    REPLACED_TOGETHER = {"zones": ("views",)}

    @staticmethod
    def named_listeners(table: dict) -> dict[str, tuple]:
        """The views' listeners, ``dns.NAME`` for --listen (twisted_netapps.config.listener_keys)."""
        views = table.get("views", [])
        if not isinstance(views, list):
            return {}
        return {
            _view_name(i, view.get("name")): ("views", i, "listen")
            for i, view in enumerate(views) if isinstance(view, dict)
        }

    def validate(self, where: str) -> None:
        names: dict[str, int] = {}
        for i, view in enumerate(self.views):
            name = _view_name(i, view.name)
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ConfigError(f"{where}.views[{i}].name: {name!r}: use letters, digits, '_' and '-'")
            if name in names:
                raise ConfigError(f"{where}.views[{i}].name: {name!r} is also the name of views[{names[name]}]")
            names[name] = i
        origins = {}
        for i, zone in enumerate(self.zones):
            origin = dns.name.from_text(zone.name)
            if origin in origins:
                raise ConfigError(f"{where}.zones[{i}].name: zone {origin} is also zones[{origins[origin]}]")
            origins[origin] = i
        for i, view in enumerate(self.views):
            if not view.listen:
                raise ConfigError(f"{where}.views[{i}].listen: a view needs at least one listener")
            for j, name in enumerate(view.zones):
                try:
                    known = dns.name.from_text(name) in origins
                except dns.exception.DNSException:
                    known = False
                if not known:
                    raise ConfigError(f"{where}.views[{i}].zones[{j}]: {name!r} is not in dns.zones")


def zone_base_dir(config_source: str) -> Path:
    """Where relative zone paths start: the config file's directory, or the packaged data dir."""
    if config_source == DEFAULT_CONFIG_NAME:
        return Path(str(importlib.resources.files("twisted_netapps").joinpath("data")))
    return Path(config_source).resolve().parent


def _zone_path(file: str, base: Path) -> Path:
    """*file* from *base*; a relative path missing there is looked up in the packaged data
    (so a copy of the embedded default, ``netapps config default > my.toml``, finds the demo zones)."""
    path = Path(file).expanduser()
    if path.is_absolute():
        return path
    packaged = zone_base_dir(DEFAULT_CONFIG_NAME) / path
    if not (base / path).exists() and packaged.exists():
        return packaged
    return base / path


def _zone_specs(settings: Settings, base: Path, where: str) -> list[ZoneSpec]:
    specs = []
    for i, zone in enumerate(settings.zones):
        specs.append(ZoneSpec(
            origin=dns.name.from_text(zone.name),
            path=_zone_path(zone.file, base),
            allow_transfer=parse_transfer_acl(zone.allow_transfer, f"{where}.zones[{i}].allow_transfer"),
            notify=parse_notify_targets(zone.notify, f"{where}.zones[{i}].notify"),
        ))
    return specs


def _log_transfer(*, event: str, zone: str, peer: str, records: int) -> None:
    if event == "refused":
        log.info("dns: zone transfer of {zone} to {peer} refused (not in allow_transfer)", zone=zone, peer=peer)
    else:
        log.info("dns: zone transfer of {zone} to {peer}: {records} records", zone=zone, peer=peer,
                 records=records)


def _describe_query(query: bytes, reply) -> tuple[str, str, str]:
    """(name, type, outcome) of one query and its reply, for logs and the status page."""
    try:
        qname, used = dns.name.from_wire(query, 12)
        name = qname.to_text()
        qtype = dns.rdatatype.to_text(int.from_bytes(query[12 + used:14 + used], "big"))
    except (dns.exception.DNSException, ValueError, IndexError):
        name, qtype = "<malformed>", "-"
    if reply is None:
        outcome = "dropped"
    else:
        first = reply if isinstance(reply, bytes) else reply[0]
        outcome = dns.rcode.to_text(dnswire.rcode_of(first)) + (" TC" if dnswire.is_truncated(first) else "")
    return name, qtype, outcome


def _log_query(query: bytes, reply, peer, over_tcp: bool) -> None:
    name, qtype, outcome = _describe_query(query, reply)
    log.info("dns: {peer} {transport} {name} {qtype}: {outcome}", peer=peer_text(peer),
             transport="tcp" if over_tcp else "udp", name=name, qtype=qtype, outcome=outcome)


class _QueryRecord:
    """A query and its reply as the status page shows them, decoded only if shown."""

    __slots__ = ("query", "reply")

    def __init__(self, query: bytes, reply) -> None:
        self.query, self.reply = query, reply

    def to_json(self) -> str:
        name, qtype, outcome = _describe_query(self.query, self.reply)
        return f"{name} {qtype} -> {outcome}"


def _query_observer(recent, log_queries: bool):
    """The responder's per-query hook: the log line if asked, the status page's event if it runs."""
    if recent is NULL_RECENT:
        return _log_query if log_queries else None

    def observe(query: bytes, reply, peer, over_tcp: bool) -> None:
        if recent.wants():  # the fields are built only for the events kept
            recent.add("query", peer=f"{peer[0]}:{peer[1]}", transport="tcp" if over_tcp else "udp",
                       query=_QueryRecord(query, reply))
        if log_queries:
            _log_query(query, reply, peer, over_tcp)

    return observe


class QuerySampler:
    """The status page's hook on a responder that logs nothing: each query becomes an
    event until this second's share (``Recent.per_second``) is used up; then the
    responder takes its plain path until the next second starts. At 100,000 queries a
    second the page sees its 100 and the other queries pay nothing for it (the
    status service's budget is 3% of a service's throughput)."""

    def __init__(self, responder: Responder, recent, clock) -> None:
        self.responder = responder
        self.recent = recent
        self.clock = clock
        self.paused = None  # the DelayedCall that resumes sampling
        responder.log_query = self.observe
        responder.observe_queries(True)

    def observe(self, query: bytes, reply, peer, over_tcp: bool) -> None:
        if self.recent.wants():
            self.recent.add("query", peer=f"{peer[0]}:{peer[1]}", transport="tcp" if over_tcp else "udp",
                            query=_QueryRecord(query, reply))
        elif self.paused is None:
            self.responder.observe_queries(False)
            now = self.clock.seconds()
            self.paused = self.clock.callLater(int(now) + 1 - now, self.resume)

    def resume(self) -> None:
        self.paused = None
        self.responder.observe_queries(True)


def build(context: ServiceContext):
    s: Settings = context.settings
    where = f"{context.config.source}: dns"
    zoneset = ZoneSet(
        _zone_specs(s, zone_base_dir(context.config.source), where), context.reactor, context.stats,
        reload_interval=s.reload_interval, notify_source=s.notify_source,
    )
    zoneset.load_all()
    if not s.zones:
        log.warn("dns: no zones configured ([[dns.zones]]): every query will be REFUSED")
    counters = Counters(context.stats.incr)
    children = [zoneset]

    def serve(endpoints: list[str], origins, setting_name: str) -> None:
        sampled = context.recent is not NULL_RECENT and not s.log_queries
        responder = Responder(max_udp_payload=s.max_udp_payload, max_prepared=s.max_prepared,
                              counters=counters, log_transfer=_log_transfer,
                              log_query=None if sampled else _query_observer(context.recent, s.log_queries))
        if sampled:
            QuerySampler(responder, context.recent, context.reactor)
        zoneset.add_view(responder, origins)
        factory = DNSStreamFactory(responder, context.stats, context.reactor, s.idle_timeout,
                                   service=context.name)
        for endpoint in endpoints:
            # A DatagramProtocol belongs to one port: a fresh one per UDP listener.
            datagrams = DNSDatagramProtocol(responder, context.stats, context.name, context.reactor) if is_datagram(endpoint) else None
            children.extend(context.listeners(factory, datagrams, endpoints=[endpoint], setting=setting_name))

    serve(s.listen, None, "listen")
    for i, view in enumerate(s.views):
        serve(view.listen, {dns.name.from_text(z) for z in view.zones}, f"views[{i}].listen")
    context.views.add("zones", "Zones", lambda: _zones_view(zoneset))
    context.views.add("records", "Records of a zone", lambda zone="": _records_view(zoneset, zone), params=("zone",))
    return context.named_service(children)


def _zones_view(zoneset: ZoneSet) -> list[dict]:
    return [
        {"zone": origin.to_text(), "serial": zone.serial, "names": len(zone.names),
         "delegations": ", ".join(sorted(c.to_text() for c in zone.cuts)), "files": ", ".join(zone.files)}
        for origin, zone in sorted(zoneset.zones.items())
    ]


def _records_view(zoneset: ZoneSet, zone: str) -> list[dict]:
    try:
        origin = dns.name.from_text(zone or ".")
    except dns.exception.DNSException as e:
        raise ValueError(f"bad zone name {zone!r}: {e}") from None
    loaded = zoneset.zones.get(origin)
    if loaded is None:
        raise ValueError(f"no zone {origin.to_text()} here (zones: {', '.join(o.to_text() for o in zoneset.zones)})")
    rows = []
    for name, node in sorted(loaded.zone.nodes.items()):
        for rdataset in node.rdatasets:
            for rdata in rdataset:
                rows.append({"name": name.derelativize(origin).to_text(), "ttl": rdataset.ttl,
                             "type": dns.rdatatype.to_text(rdataset.rdtype), "data": rdata.to_text()})
                if len(rows) >= 1000:
                    return rows
    return rows
