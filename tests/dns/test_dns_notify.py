"""The NOTIFY sender, with a fake UDP transport and a fake clock."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
from twisted.internet import task

from twisted_netapps.dns.notify import NotifySender
from twisted_netapps.dns.zones import load_zone
from twisted_netapps.stats import ServiceStats

DEMO = Path(__file__).resolve().parents[2] / "twisted_netapps" / "data" / "zones"
ZONE = load_zone("example.test.", DEMO / "example.test.zone")
SOA = ZONE.zone.find_rrset(ZONE.origin, "SOA")
SECONDARY = ("127.0.0.9", 5399)


class FakeUDP:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))


def sender(tries=3):
    clock = task.Clock()
    stats = ServiceStats("dns")
    notifier = NotifySender(clock, stats, timeout=2.0, tries=tries)
    notifier.makeConnection(FakeUDP())
    return notifier, clock, stats


def ack(data: bytes, rcode=dns.rcode.NOERROR) -> bytes:
    query = dns.message.from_wire(data)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response.to_wire()


def test_notify_message():
    notifier, _, stats = sender()
    notifier.notify(ZONE.origin, SOA, [SECONDARY])
    [(data, addr)] = notifier.transport.sent
    msg = dns.message.from_wire(data)
    assert addr == SECONDARY and msg.opcode() == dns.opcode.NOTIFY
    assert msg.flags & dns.flags.AA and not msg.flags & dns.flags.QR
    assert msg.question[0].name == ZONE.origin and msg.answer[0][0].serial == 2026112101
    assert stats["notify_sent"] == 1


def test_retries_until_acknowledged():
    notifier, clock, stats = sender()
    notifier.notify(ZONE.origin, SOA, [SECONDARY])
    clock.advance(2)
    assert len(notifier.transport.sent) == 2  # no answer: sent again
    notifier.datagramReceived(ack(notifier.transport.sent[0][0]), SECONDARY)
    clock.advance(10)
    assert len(notifier.transport.sent) == 2 and stats["notify_acked"] == 1


def test_gives_up_after_the_last_try():
    notifier, clock, stats = sender(tries=3)
    notifier.notify(ZONE.origin, SOA, [SECONDARY])
    clock.advance(2)
    clock.advance(2)
    clock.advance(2)
    assert len(notifier.transport.sent) == 3 and stats["notify_failed"] == 1
    assert not clock.getDelayedCalls()


def test_answers_from_elsewhere_or_with_another_id_are_ignored():
    notifier, clock, stats = sender()
    notifier.notify(ZONE.origin, SOA, [SECONDARY])
    data = notifier.transport.sent[0][0]
    notifier.datagramReceived(ack(data), ("127.0.0.66", 5399))  # wrong source
    wrong_id = bytes([data[0] ^ 0xFF]) + ack(data)[1:]
    notifier.datagramReceived(wrong_id, SECONDARY)
    notifier.datagramReceived(b"\x00", SECONDARY)  # garbage
    assert stats["notify_acked"] == 0
    clock.advance(2)
    assert len(notifier.transport.sent) == 2


def test_stop_cancels_retries():
    notifier, clock, _ = sender()
    notifier.notify(ZONE.origin, SOA, [SECONDARY, ("127.0.0.10", 53)])
    notifier.stop()
    assert not clock.getDelayedCalls()
