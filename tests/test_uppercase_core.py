"""The uppercase core (sans-I/O) and its Twisted adapters."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from twisted_netapps.stats import ServiceStats
from twisted_netapps.uppercase.core import (
    DatagramError,
    LineMachine,
    LineTooLong,
    Reply,
    datagram_reply,
    uppercase,
)
from twisted_netapps.uppercase.protocol import UppercaseDatagramProtocol, UppercaseFactory


def test_uppercase_is_pythons_and_keeps_invalid_utf8():
    assert uppercase("straße".encode()) == b"STRASSE"
    assert uppercase("ﬁx ǆ".encode()) == "FIX Ǆ".encode()
    assert uppercase(b"abc\xffdef\xc3") == b"ABC\xffDEF\xc3"


def test_lines_keep_their_endings_and_partial_lines_wait():
    m = LineMachine()
    assert m.receive_data(b"one\r\ntwo\nthr") == [Reply(b"ONE\r\n"), Reply(b"TWO\n")]
    assert m.receive_data(b"ee\n") == [Reply(b"THREE\n")]
    assert m.receive_data(b"\n") == [Reply(b"\n")]
    assert m.pending == b""


def test_line_at_the_limit_passes_and_one_over_fails():
    m = LineMachine(max_line=5)
    assert m.receive_data(b"abcde\r\n") == [Reply(b"ABCDE\r\n")]
    events = m.receive_data(b"abcdef")
    assert isinstance(events[-1], LineTooLong) and m.failed
    assert b"line too long" in events[-1].data
    assert m.receive_data(b"more\n") == []


def test_overlong_line_detected_before_its_end_arrives():
    m = LineMachine(max_line=10)
    assert m.receive_data(b"x" * 10) == []
    assert m.receive_data(b"\r") == []  # could still be "10 bytes + CRLF"
    assert isinstance(m.receive_data(b"y")[-1], LineTooLong)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(1, 40))
def test_any_bytes_give_replies_or_a_clean_failure(chunks, limit):
    m = LineMachine(max_line=limit)
    out = []
    for chunk in chunks:
        out.extend(m.receive_data(chunk))
    replies = [e for e in out if isinstance(e, Reply)]
    assert all(e.data.endswith(b"\n") for e in replies)
    assert sum(isinstance(e, LineTooLong) for e in out) <= 1
    if not m.failed:
        data = b"".join(chunks)
        assert len(replies) == data.count(b"\n")
        *lines, tail = data.split(b"\n")
        expected = [
            uppercase(l[:-1]) + b"\r\n" if l.endswith(b"\r") else uppercase(l) + b"\n" for l in lines
        ]
        assert [e.data for e in replies] == expected
        assert m.pending == tail


@given(st.binary(max_size=2000))
def test_datagram_replies_never_exceed_limits(payload):
    reply = datagram_reply(payload, max_datagram=1000)
    if not payload:
        assert reply is None
    elif len(payload) > 1000:
        assert isinstance(reply, DatagramError) and len(reply.data) < 100
    else:
        assert reply == Reply(uppercase(payload))


def _connect(factory):
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4444))
    proto.makeConnection(transport)
    return proto, transport


def _factory(clock, **kw):
    opts = dict(max_line=100, idle_timeout=30, log_requests=False)
    opts.update(kw)
    return UppercaseFactory(ServiceStats("uppercase"), clock, **opts)


def test_tcp_protocol_answers_counts_and_writes_once_per_read():
    clock = task.Clock()
    factory = _factory(clock)
    proto, transport = _connect(factory)
    proto.dataReceived(b"a\nb\nc")
    assert transport.value() == b"A\nB\n"
    proto.dataReceived(b"\n")
    assert transport.value() == b"A\nB\nC\n"
    snap = factory.stats.snapshot()
    assert snap["requests"] == 3  # connections are counted by the frame (tests/test_frame.py)
    assert snap["bytes_in"] == 6 and snap["bytes_out"] == 6
    proto.connectionLost(None)


def test_tcp_long_line_gets_error_and_close():
    proto, transport = _connect(_factory(task.Clock(), max_line=4))
    proto.dataReceived(b"ok\n12345678")
    assert transport.value() == b"OK\nERROR: line too long (limit 4 bytes)\r\n"
    assert transport.disconnecting


def test_tcp_idle_timeout_uses_the_clock():
    clock = task.Clock()
    proto, transport = _connect(_factory(clock, idle_timeout=30))
    clock.advance(29)
    proto.dataReceived(b"x\n")
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting and transport.value().endswith(b"ERROR: idle timeout\r\n")


def test_tcp_trickled_line_is_cut_at_the_line_deadline():
    clock = task.Clock()
    proto, transport = _connect(_factory(clock, idle_timeout=30, line_timeout=20))
    for _ in range(3):
        proto.dataReceived(b"x")
        clock.advance(5)  # the idle timer is reset every time...
    assert not transport.disconnecting
    clock.advance(5)  # ...but the line began 20 s ago
    assert transport.disconnecting and transport.value().endswith(b"ERROR: line timeout\r\n")


def test_tcp_complete_lines_never_hit_the_line_deadline():
    clock = task.Clock()
    proto, transport = _connect(_factory(clock, idle_timeout=30, line_timeout=20))
    for _ in range(10):
        proto.dataReceived(b"x")
        clock.advance(5)
        proto.dataReceived(b"\n")
        clock.advance(5)
    assert not transport.disconnecting


def test_tcp_half_close_answers_the_unterminated_tail():
    proto, transport = _connect(_factory(task.Clock()))
    proto.dataReceived(b"tail")
    proto.readConnectionLost()
    assert transport.value() == b"TAIL" and transport.disconnecting


class _FakeUDP:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))


def test_udp_protocol_replies_drops_empty_and_refuses_oversize():
    stats = ServiceStats("uppercase")
    proto = UppercaseDatagramProtocol(stats, max_datagram=10, log_requests=False)
    proto.transport = _FakeUDP()
    proto.datagramReceived(b"hi", ("127.0.0.1", 5))
    proto.datagramReceived(b"", ("127.0.0.1", 5))
    proto.datagramReceived(b"x" * 11, ("127.0.0.1", 5))
    assert proto.transport.sent[0] == (b"HI", ("127.0.0.1", 5))
    assert proto.transport.sent[1][0].startswith(b"ERROR: datagram too large")
    assert len(proto.transport.sent) == 2
    assert stats["requests"] == 1 and stats["errors"] == 1 and stats["dropped"] == 1
