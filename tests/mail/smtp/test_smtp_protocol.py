"""The SMTP Twisted adapter with a fake transport and clock: deadlines, half-close, waiting."""

from __future__ import annotations

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from twisted_netapps.logins import LoginGuard
from twisted_netapps.mail.smtp.core import Reply, SessionConfig
from twisted_netapps.mail.smtp.protocol import SMTPFactory
from twisted_netapps.stats import ServiceStats


class Deliverer:
    def __init__(self) -> None:
        self.pending: list[defer.Deferred] = []

    def accept(self, envelope, data):
        d = defer.Deferred()
        self.pending.append(d)
        return d


def accept_all(info, sender, rcpt):
    return None


@pytest.fixture
def factory():
    clock = task.Clock()
    return SMTPFactory(
        config=SessionConfig(hostname="mx.test"), check_recipient=accept_all, deliverer=Deliverer(), portal=None,
        tls_options=None, stats=ServiceStats("smtp"), reactor=clock, command_timeout=300, data_timeout=600,
        command_deadline=1.0, data_deadline=5.0, login_deadline=10.0, auth_failure_delay=0.1,
        logins=LoginGuard(clock),
    )


def connect(factory):
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.2", 40000))
    proto.makeConnection(transport)
    transport.clear()
    return proto, transport


def test_a_trickled_command_is_cut_at_the_command_deadline(factory):
    clock = factory.reactor
    proto, transport = connect(factory)
    for byte in b"NOOP\r\n"[:4]:
        proto.dataReceived(bytes([byte]))
        clock.advance(0.2)  # each byte resets the idle timer; the deadline runs from the first
    assert not transport.disconnecting
    clock.advance(0.25)
    assert transport.value() == b"421 4.4.2 Command time limit exceeded, closing connection\r\n"
    assert transport.disconnecting and factory.stats["deadlines_passed"] == 1


def test_each_command_line_gets_its_own_deadline(factory):
    clock = factory.reactor
    proto, transport = connect(factory)
    for _ in range(5):
        proto.dataReceived(b"NO")
        clock.advance(0.6)
        proto.dataReceived(b"OP\r\nNO")  # one line done, the next begun: counted from now
        clock.advance(0.6)
        proto.dataReceived(b"OP\r\n")
    assert transport.value() == b"250 2.0.0 OK\r\n" * 10 and not transport.disconnecting


def test_data_deadline_counts_from_the_354(factory):
    clock = factory.reactor
    proto, transport = connect(factory)
    proto.dataReceived(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n")
    for _ in range(24):  # complete lines, steadily: the idle timer and the command deadline never fire
        proto.dataReceived(b"line\r\n")
        clock.advance(0.2)
    assert not transport.disconnecting
    clock.advance(0.3)
    assert transport.value().endswith(b"421 4.4.2 Data time limit exceeded, closing connection\r\n")
    assert transport.disconnecting and factory.deliverer.pending == []


def test_no_deadline_runs_while_the_session_waits_on_the_disk(factory):
    clock = factory.reactor
    proto, transport = connect(factory)
    proto.dataReceived(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nbody\r\n.\r\nNO")
    [pending] = factory.deliverer.pending
    clock.advance(30)  # a slow fsync is not the client's fault
    assert not transport.disconnecting
    pending.callback(Reply(250, "2.0.0", "Queued"))
    proto.dataReceived(b"OP\r\n")
    assert transport.value().endswith(b"250 2.0.0 Queued\r\n250 2.0.0 OK\r\n")


def test_login_deadline_on_a_port_that_requires_auth(factory):
    from dataclasses import replace

    clock = factory.reactor
    factory.config = replace(factory.config, auth_required=True)
    proto, transport = connect(factory)
    for _ in range(9):
        proto.dataReceived(b"NOOP\r\n")  # busy, but never logging in
        clock.advance(1.0)
    assert not transport.disconnecting
    clock.advance(1.0)
    assert transport.value().endswith(b"421 4.4.2 Login time limit exceeded, closing connection\r\n")


def test_half_close_gets_every_reply_then_closes(factory):
    proto, transport = connect(factory)
    proto.dataReceived(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n")
    proto.readConnectionLost()
    assert not transport.disconnecting  # the message is not durable yet
    factory.deliverer.pending[0].callback(Reply(250, "2.0.0", "Queued"))
    assert transport.value().endswith(b"250 2.0.0 Queued\r\n221 2.0.0 mx.test closing connection\r\n")
    assert transport.disconnecting


def test_a_full_disk_is_one_rate_limited_warning_per_failure_not_a_traceback(tmp_path):
    from types import SimpleNamespace

    from twisted.logger import LogLevel, globalLogPublisher

    from twisted_netapps.mail.smtp.delivery import Deliverer
    from twisted_netapps.mail.smtp.envelope import Envelope
    from twisted_netapps.mail.smtp.syntax import Address

    class FullDisk:
        def submit(self, job):
            return defer.fail(OSError(28, "No space left on device"))

    policy = SimpleNamespace(route=lambda rcpt: SimpleNamespace(local_users=["alice"], remote=[]))
    deliverer = Deliverer(None, None, policy, FullDisk(), hostname="mx.test", clock=task.Clock())
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        replies = [
            deliverer.accept(Envelope(Address("a", "b.test"), [Address("alice", "example.test")]), b"x\r\n").result
            for _ in range(50)
        ]
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert {reply.code for reply in replies} == {451}
    ours = [e for e in events if e.get("log_namespace") == "netapps.smtp"]
    assert ours and all(e["log_level"] is LogLevel.warn and "log_failure" not in e for e in ours)
    assert len(ours) <= 11  # a burst of 10, then at most one a second
    assert "No space left on device" in ours[0]["log_format"].format(**ours[0])
