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
from pathlib import Path

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

from twisted.logger import Logger

from twisted_netapps.config import DEFAULT_CONFIG_NAME
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.dns.responder import DEFAULT_UDP_PAYLOAD, Counters, Responder
from twisted_netapps.dns.transport import DNSDatagramProtocol, DNSStreamFactory
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
    listen: list[str] = setting([], "listeners of this view")
    zones: list[str] = setting([], "names of the zones (from [[dns.zones]]) this view serves")


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

    def validate(self, where: str) -> None:
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


def _zone_specs(settings: Settings, base: Path, where: str) -> list[ZoneSpec]:
    specs = []
    for i, zone in enumerate(settings.zones):
        path = Path(zone.file).expanduser()
        specs.append(ZoneSpec(
            origin=dns.name.from_text(zone.name),
            path=path if path.is_absolute() else base / path,
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


def _log_query(query: bytes, reply, peer, over_tcp: bool) -> None:
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
        outcome = dns.rcode.to_text(first[3] & 0x0F) + (" TC" if first[2] & 0x02 else "")
    log.info("dns: {peer} {transport} {name} {qtype}: {outcome}", peer=f"{peer[0]}:{peer[1]}",
             transport="tcp" if over_tcp else "udp", name=name, qtype=qtype, outcome=outcome)


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
        responder = Responder(max_udp_payload=s.max_udp_payload, max_prepared=s.max_prepared,
                              counters=counters, log_transfer=_log_transfer,
                              log_query=_log_query if s.log_queries else None)
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
    return context.named_service(children)
