"""Service builder for ``uppercase``."""

from __future__ import annotations

import dataclasses

from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.settings import setting
from twisted_netapps.uppercase.core import MAX_UDP_PAYLOAD
from twisted_netapps.uppercase.protocol import UppercaseDatagramProtocol, UppercaseFactory


# What this service's counters count (twisted_netapps.stats; netapps stats --explain).
COUNTERS: dict[str, str] = {
    "requests": "lines (TCP) and datagrams (UDP) answered uppercased",
    "errors": "lines over max_line, datagrams over max_datagram, replies the network refused",
    "dropped": "empty UDP datagrams, dropped without a reply",
}

@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(
        ["tcp:12000:interface=127.0.0.1", "udp:12000:interface=127.0.0.1"],
        "TCP endpoint strings and udp:PORT[:interface=ADDR] listeners",
    )
    max_line: int = setting(65536, "longest TCP line in bytes; longer gets an error line and a close", minimum=1)
    idle_timeout: float = setting(300.0, "seconds a TCP connection may stay silent", positive=True)
    line_timeout: float = setting(
        60.0, "seconds a TCP line may take from its first byte to its end (slow senders are cut)", positive=True
    )
    max_datagram: int = setting(
        MAX_UDP_PAYLOAD, "largest UDP datagram answered; larger gets an error datagram",
        minimum=1, maximum=MAX_UDP_PAYLOAD,
    )
    log_requests: bool = setting(True, "log every line/datagram at info (connections are always logged)")


def build(context: ServiceContext):
    s: Settings = context.settings
    factory = UppercaseFactory(
        context.stats, context.reactor,
        max_line=s.max_line, idle_timeout=s.idle_timeout, log_requests=s.log_requests, line_timeout=s.line_timeout,
        recent=context.recent,
    )
    datagrams = UppercaseDatagramProtocol(context.stats, max_datagram=s.max_datagram, log_requests=s.log_requests,
                                          recent=context.recent)
    return context.named_service(context.listeners(factory, datagrams, refuse=b"ERROR: too many connections\r\n"))
