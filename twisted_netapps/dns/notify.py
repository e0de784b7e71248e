"""NOTIFY (RFC 1996): tell secondaries a zone changed, so they transfer it now.

One UDP socket (bound to the configured source address, ephemeral port)
sends a NOTIFY per (zone, secondary) with a random ID, retries on silence,
and accepts as acknowledgement only a response from that secondary's
address carrying that ID and question.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
from twisted.internet import protocol
from twisted.logger import Logger

log = Logger(namespace="netapps.dns")


@dataclass
class _Pending:
    zone: dns.name.Name
    target: tuple[str, int]
    wire: bytes
    tries_left: int
    call: object = None


def notify_message(origin: dns.name.Name, soa: dns.rrset.RRset, query_id: int) -> bytes:
    msg = dns.message.make_query(origin, dns.rdatatype.SOA)
    msg.id = query_id
    msg.flags = dns.flags.AA  # RD clear
    msg.set_opcode(dns.opcode.NOTIFY)
    msg.answer.append(soa)  # the new serial, as a hint (RFC 1996 3.7)
    return msg.to_wire()


class NotifySender(protocol.DatagramProtocol):
    """Sends NOTIFYs and matches their acknowledgements; counts into *stats*."""

    noisy = False

    def __init__(self, reactor, stats, *, timeout: float = 2.0, tries: int = 5) -> None:
        self.reactor = reactor
        self.stats = stats
        self.timeout = timeout
        self.tries = tries
        self._pending: dict[int, _Pending] = {}

    def notify(self, origin: dns.name.Name, soa: dns.rrset.RRset, targets: list[tuple[str, int]]) -> None:
        if self.transport is None:
            return
        for target in targets:
            query_id = secrets.randbelow(65536)
            while query_id in self._pending:
                query_id = secrets.randbelow(65536)
            pending = _Pending(origin, target, notify_message(origin, soa, query_id), self.tries)
            self._pending[query_id] = pending
            self._send(query_id)

    def _send(self, query_id: int) -> None:
        pending = self._pending.get(query_id)
        if pending is None:
            return
        if pending.tries_left == 0:
            del self._pending[query_id]
            self.stats.incr("notify_failed")
            log.warn("dns: NOTIFY for zone {zone} to {host}:{port} not acknowledged",
                     zone=pending.zone.to_text(), host=pending.target[0], port=pending.target[1])
            return
        pending.tries_left -= 1
        try:
            self.transport.write(pending.wire, pending.target)
            self.stats.incr("notify_sent")
        except OSError as e:
            log.info("dns: cannot send NOTIFY to {host}:{port}: {error}",
                     host=pending.target[0], port=pending.target[1], error=e)
        pending.call = self.reactor.callLater(self.timeout, self._send, query_id)

    def datagramReceived(self, data: bytes, addr) -> None:
        if len(data) < 12:
            return
        query_id = (data[0] << 8) | data[1]
        pending = self._pending.get(query_id)
        if pending is None or addr[0] != pending.target[0] or addr[1] != pending.target[1]:
            return  # not an answer to anything we asked: ignore (spoofing, stale)
        try:
            reply = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            return
        if (reply.opcode() != dns.opcode.NOTIFY or not reply.flags & dns.flags.QR
                or not reply.question or reply.question[0].name != pending.zone):
            return
        del self._pending[query_id]
        if pending.call is not None and pending.call.active():
            pending.call.cancel()
        self.stats.incr("notify_acked")
        log.info("dns: NOTIFY for zone {zone} acknowledged by {host}:{port} ({rcode})",
                 zone=pending.zone.to_text(), host=addr[0], port=addr[1],
                 rcode=dns.rcode.to_text(reply.rcode()))

    def stop(self) -> None:
        for pending in self._pending.values():
            if pending.call is not None and pending.call.active():
                pending.call.cancel()
        self._pending.clear()
