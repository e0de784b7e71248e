"""The frame pieces every service uses: connection limits, deadlines, periodic
tasks, the login guard, thread pools, the sans-I/O helpers, addresses."""

from __future__ import annotations

import dataclasses
import enum

import pytest
from hypothesis import given, strategies as st
from twisted.cred import error as cred_error
from twisted.internet import defer, interfaces, protocol, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_netapps.addresses import format_peer, is_loopback, parse_host_port
from twisted_netapps.config import DaemonSettings
from twisted_netapps.connections import LimitedFactory, LogBudget, StreamSettings
from twisted_netapps.deadlines import Deadline
from twisted_netapps.logins import LoginGuard, LoginRefused
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.sansio import OVERLONG, LineBuffer, LocalProtocolError, StateMachine
from twisted_netapps.stats import ServiceStats

# ------------------------------------------------------------------ connections


@implementer(interfaces.IHalfCloseableProtocol)
class Recorder(protocol.Protocol):
    def __init__(self):
        self.events = []

    def connectionMade(self):
        self.events.append("made")

    def dataReceived(self, data):
        self.events.append(data)

    def readConnectionLost(self):
        self.events.append("read-lost")

    def writeConnectionLost(self):
        self.events.append("write-lost")

    def connectionLost(self, reason):
        self.events.append("lost")


class RecorderFactory(protocol.Factory):
    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        p = Recorder()
        self.built.append(p)
        return p


def limited(max_connections=3, per_address=2, refuse=b"421 busy\r\n"):
    stats = ServiceStats("t")
    factory = LimitedFactory(
        RecorderFactory(), service="t", listener="tcp:0", stats=stats, refuse=refuse,
        limits=StreamSettings(max_connections=max_connections, max_connections_per_address=per_address),
    )
    return factory, stats


def connect(factory, host="127.0.0.1", port=40000):
    addr = IPv4Address("TCP", host, port)
    proto = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    proto.makeConnection(transport)
    return proto, transport


def test_connections_are_counted_and_passed_through():
    factory, stats = limited()
    proto, transport = connect(factory)
    inner = factory.wrappedFactory.built[0]
    proto.dataReceived(b"hello")
    assert inner.events == ["made", b"hello"]
    assert stats["connections"] == 1 and stats["active_connections"] == 1
    proto.connectionLost(Failure(Exception("gone")))
    assert inner.events[-1] == "lost" and stats["active_connections"] == 0
    assert factory.active == 0 and not factory.per_address


def test_per_address_cap_refuses_with_the_protocols_message_and_others_still_get_in():
    factory, stats = limited(max_connections=10, per_address=2)
    for port in (1, 2):
        connect(factory, port=port)
    _, refused = connect(factory, port=3)
    assert refused.value() == b"421 busy\r\n" and refused.disconnecting
    _, other = connect(factory, host="127.0.0.2")
    assert not other.disconnecting and other.value() == b""
    assert stats["refused_connections"] == 1 and stats["active_connections"] == 3


def test_listener_cap_and_slot_reuse():
    factory, stats = limited(max_connections=2, per_address=5)
    first, _ = connect(factory, host="10.0.0.1")
    connect(factory, host="10.0.0.2")
    _, refused = connect(factory, host="10.0.0.3")
    assert refused.disconnecting
    first.connectionLost(Failure(Exception("gone")))
    _, again = connect(factory, host="10.0.0.3")
    assert not again.disconnecting


def test_a_full_listener_closes_the_oldest_of_the_heaviest_address_for_one_holding_fewer():
    factory, stats = limited(max_connections=4, per_address=3)
    attacker = [connect(factory, host="10.0.0.1", port=p) for p in (1, 2, 3)]
    connect(factory, host="10.0.0.2")
    _, admitted = connect(factory, host="10.0.0.3")  # holds none, the heaviest holds 3
    assert not admitted.disconnecting and admitted.value() == b""
    oldest = attacker[0][1]
    assert oldest.disconnecting and not attacker[1][1].disconnecting  # the oldest, and only it
    assert stats["evicted_connections"] == 1 and factory.active == 4
    assert factory.per_address == {"10.0.0.1": 2, "10.0.0.2": 1, "10.0.0.3": 1}
    # the heaviest still holds 2: another newcomer gets the next oldest
    _, admitted = connect(factory, host="10.0.0.4")
    assert not admitted.disconnecting and attacker[1][1].disconnecting and stats["evicted_connections"] == 2
    # one each now: fair already, so a plain refusal
    _, refused = connect(factory, host="10.0.0.5")
    assert refused.value() == b"421 busy\r\n" and stats["evicted_connections"] == 2
    # an evicted connection's close is counted once, and frees only its descriptor
    attacker[0][0].connectionLost(Failure(Exception("aborted")))
    assert factory.active == 4 and factory.per_address["10.0.0.1"] == 1 and factory.descriptors.in_use == 5
    attacker[1][0].connectionLost(Failure(Exception("aborted")))
    attacker[2][0].connectionLost(Failure(Exception("gone")))
    assert "10.0.0.1" not in factory.per_address and "10.0.0.1" not in factory.by_address
    assert factory.active == 3 and factory.descriptors.in_use == 3


def test_no_eviction_between_equals():
    factory, stats = limited(max_connections=2, per_address=5)
    connect(factory, host="10.0.0.1")
    connect(factory, host="10.0.0.1")
    _, refused = connect(factory, host="10.0.0.1")  # its own address is the heaviest: no
    assert refused.disconnecting and refused.value() == b"421 busy\r\n"
    factory2, _ = limited(max_connections=2, per_address=5)
    connect(factory2, host="10.0.0.1")
    connect(factory2, host="10.0.0.2")
    _, refused = connect(factory2, host="10.0.0.3")  # one each: fair already
    assert refused.value() == b"421 busy\r\n" and stats["evicted_connections"] == 0


def test_separate_listeners_have_separate_counts():
    shared_protocols = RecorderFactory()
    stats = ServiceStats("smtp")
    limits = StreamSettings(max_connections=1, max_connections_per_address=1)
    port25 = LimitedFactory(shared_protocols, service="smtp", listener="25", limits=limits, stats=stats)
    port587 = LimitedFactory(shared_protocols, service="smtp", listener="587", limits=limits, stats=stats)
    connect(port25)
    _, refused = connect(port25, host="10.0.0.9")
    _, submission = connect(port587)
    assert refused.disconnecting and not submission.disconnecting


def test_half_close_reaches_a_half_closeable_protocol():
    factory, _ = limited()
    proto, _ = connect(factory)
    assert interfaces.IHalfCloseableProtocol.providedBy(proto)
    proto.readConnectionLost()
    assert factory.wrappedFactory.built[0].events[-1] == "read-lost"


def test_a_plain_protocol_is_not_claimed_half_closeable():
    factory = LimitedFactory(
        protocol.Factory.forProtocol(protocol.Protocol), service="t", listener="x",
        limits=StreamSettings(), stats=ServiceStats("t"),
    )
    proto, _ = connect(factory)
    assert not interfaces.IHalfCloseableProtocol.providedBy(proto)


def test_log_budget_limits_lines_and_counts_the_rest():
    now = [0.0]
    budget = LogBudget(rate=1.0, burst=3, clock=lambda: now[0])
    assert [budget.allow() for _ in range(5)] == [True, True, True, False, False]
    assert budget.take_suppressed() == 2
    now[0] += 1.0
    assert budget.allow()


# ------------------------------------------------------------------ deadlines


def test_deadline_counts_from_start_not_from_later_activity():
    clock = task.Clock()
    fired = []
    deadline = Deadline(clock, 10, lambda: fired.append(clock.seconds()))
    deadline.start()
    for _ in range(9):
        clock.advance(1)
        deadline.start()  # more bytes: the deadline does not move
    clock.advance(1)
    assert fired == [10]
    assert not deadline.active


def test_deadline_cancel_and_restart():
    clock = task.Clock()
    fired = []
    deadline = Deadline(clock, 5, lambda: fired.append(True))
    deadline.start()
    clock.advance(4)
    deadline.restart()
    clock.advance(4)
    deadline.cancel()
    clock.advance(10)
    assert fired == [] and not deadline.active


# ------------------------------------------------------------------ periodic


def test_periodic_task_survives_failures_and_keeps_its_schedule():
    clock = task.Clock()
    runs = []

    def work():
        runs.append(clock.seconds())
        if len(runs) == 1:
            raise OSError(28, "No space left on device")
        if len(runs) == 2:
            return defer.fail(RuntimeError("boom"))
        return None

    periodic = PeriodicTask("test task", 5, work, clock)
    periodic.startService()
    for _ in range(3):
        clock.advance(5)
    assert runs == [5, 10, 15] and periodic.failures == 2
    periodic.stopService()
    clock.advance(5)
    assert len(runs) == 3


def test_periodic_task_does_not_overlap_a_slow_run():
    clock = task.Clock()
    pending = []

    def work():
        pending.append(defer.Deferred())
        return pending[-1]

    periodic = PeriodicTask("slow", 1, work, clock)
    periodic.startService()
    clock.advance(1)
    clock.advance(1)
    clock.advance(1)
    assert len(pending) == 1
    pending[0].callback(None)
    clock.advance(1)
    assert len(pending) == 2
    periodic.stopService()


# ------------------------------------------------------------------ login guard


class Portal:
    def __init__(self, password="right"):
        self.password = password
        self.checks = 0

    def login(self, creds, mind, *ifaces):
        self.checks += 1
        if creds == self.password:
            return defer.succeed((ifaces[0], "avatar", lambda: None))
        return defer.fail(cred_error.UnauthorizedLogin())


def outcome(d):
    result = []
    d.addBoth(result.append)
    return result


def guard(**kw):
    settings = dataclasses.replace(DaemonSettings(), **kw)
    clock = task.Clock()
    return LoginGuard(clock, settings), clock


def test_failures_are_delayed_and_the_delay_escalates():
    g, clock = guard(login_max_delay=8.0)
    portal = Portal()
    delays = []
    for _ in range(5):
        result = outcome(g.login(portal, "wrong", "10.0.0.1", "alice", "I", failure_delay=1.0))
        waited = 0
        while not result:
            clock.advance(0.5)
            waited += 0.5
        assert result[0].check(cred_error.UnauthorizedLogin)
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_an_address_over_budget_is_refused_without_a_check_even_in_parallel():
    g, clock = guard(login_failures_per_address=3, login_block_seconds=60)
    portal = Portal()
    results = [outcome(g.login(portal, "wrong", "10.0.0.1", f"user{i}", "I", failure_delay=1)) for i in range(50)]
    refused = [r for r in results if r and r[0].check(LoginRefused)]
    assert len(refused) == 47 and portal.checks == 3  # 50 parallel guesses: three password checks
    clock.advance(60)
    assert portal.checks == 3
    # after the block the address may try again; a fresh block doubles
    outcome(g.login(portal, "wrong", "10.0.0.1", "u", "I"))
    blocked = outcome(g.login(portal, "wrong", "10.0.0.1", "u", "I"))
    assert blocked and blocked[0].check(LoginRefused) and blocked[0].value.retry_after == 120


def test_the_right_password_from_another_address_is_never_refused_or_delayed():
    g, clock = guard(login_failures_per_address=2)
    portal = Portal()
    for _ in range(5):
        outcome(g.login(portal, "wrong", "10.6.6.6", "alice", "I"))
    clock.advance(100)
    ok = outcome(g.login(portal, "right", "10.0.0.7", "alice", "I"))
    assert ok and ok[0][1] == "avatar"


def test_success_clears_the_record_and_quiet_time_forgets():
    g, clock = guard(login_failures_per_address=3, login_quiet_seconds=100)
    portal = Portal()
    for _ in range(2):
        outcome(g.login(portal, "wrong", "10.0.0.1", "a", "I"))
    clock.advance(60)
    assert outcome(g.login(portal, "right", "10.0.0.1", "a", "I"))[0][1] == "avatar"
    for _ in range(2):
        outcome(g.login(portal, "wrong", "10.0.0.1", "a", "I"))
    clock.advance(200)  # quiet: forgotten
    first = outcome(g.login(portal, "wrong", "10.0.0.1", "a", "I", failure_delay=1))
    clock.advance(1)
    assert first and first[0].check(cred_error.UnauthorizedLogin)


def test_memory_is_bounded():
    g, _ = guard()
    g.MAX_TRACKED = 100
    portal = Portal()
    for i in range(1000):
        outcome(g.login(portal, "wrong", f"10.0.{i // 256}.{i % 256}", f"user{i}", "I"))
    assert len(g._addresses) <= 100 and len(g._accounts) <= 100


# ------------------------------------------------------------------ sans-I/O helpers


class Phase(enum.Enum):
    GREETING = 1
    COMMAND = 2
    CLOSED = 3


TRANSITIONS = {
    Phase.GREETING: frozenset({Phase.COMMAND, Phase.CLOSED}),
    Phase.COMMAND: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


def test_state_machine_moves_only_along_the_table():
    machine = StateMachine(Phase.GREETING, TRANSITIONS)
    machine.move(Phase.COMMAND)
    with pytest.raises(LocalProtocolError):
        machine.move(Phase.GREETING)
    machine.move(Phase.CLOSED)
    assert machine.state is Phase.CLOSED


def test_state_machine_table_must_cover_every_state():
    with pytest.raises(LocalProtocolError):
        StateMachine(Phase.GREETING, {Phase.GREETING: frozenset()})


def test_line_buffer_lines_and_limits():
    buffer = LineBuffer(10)
    buffer.feed(b"abc\r\nde")
    assert buffer.next_line() == b"abc" and buffer.next_line() is None
    buffer.feed(b"f\n" + b"x" * 30)
    assert buffer.next_line() == b"def"
    assert buffer.next_line() is OVERLONG
    buffer.feed(b"y" * 30)
    assert buffer.next_line() is None  # still inside the overlong line: dropped, reported once
    buffer.feed(b"z\nok\n")
    assert buffer.next_line() == b"ok"


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=4, max_value=64))
def test_line_buffer_never_returns_an_overlong_line_and_keeps_memory_bounded(chunks, limit):
    buffer = LineBuffer(limit)
    for chunk in chunks:
        buffer.feed(chunk)
        while (line := buffer.next_line()) is not None:
            assert line is OVERLONG or (len(line) < limit and b"\n" not in line)
        assert len(buffer._buffer) <= limit + 40


# ------------------------------------------------------------------ addresses


def test_parse_host_port():
    assert parse_host_port("127.0.0.1", 53) == ("127.0.0.1", 53)
    assert parse_host_port("127.0.0.1:5301", 53) == ("127.0.0.1", 5301)
    assert parse_host_port("[::1]:53", 5) == ("::1", 53)
    assert parse_host_port("::1", 53) == ("::1", 53)
    for bad in ("example.test", "127.0.0.1:0", "127.0.0.1:x", "[::1", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_host_port(bad, 53)


def test_peer_formatting_and_loopback():
    assert format_peer(IPv4Address("TCP", "127.0.0.1", 25)) == "127.0.0.1:25"
    assert is_loopback(IPv4Address("TCP", "127.0.0.5", 25))
    assert not is_loopback(IPv4Address("TCP", "10.0.0.1", 25))


def test_refusals_past_the_allowance_are_closed_at_once_without_holding_a_descriptor():
    from twisted_netapps.connections import DescriptorBudget

    budget = DescriptorBudget(limit=1, refusal_allowance=2)
    factory = LimitedFactory(
        RecorderFactory(), service="t", listener="x", stats=ServiceStats("t"), refuse=b"busy\r\n",
        limits=StreamSettings(max_connections=100, max_connections_per_address=100), descriptors=budget,
    )
    connect(factory, port=1)
    refused = [connect(factory, port=p)[1] for p in (2, 3)]
    assert all(t.value() == b"busy\r\n" for t in refused) and budget.refusing == 2
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4)) is None  # Twisted closes it at once
