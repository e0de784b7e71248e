"""The shared DNS transports, driven with StringTransport and a fake clock."""

from __future__ import annotations

import socket
import struct

import pytest_twisted
from twisted.internet import defer, error, reactor, task
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_netapps import dnswire
from twisted_netapps.dns.transport import (
    DNSDatagramProtocol,
    DNSStreamFactory,
    IQueryHandler,
    datagram_sender,
    peer_text,
)
from twisted_netapps.stats import ServiceStats

QUERY = bytes.fromhex("abcd01000001000000000000") + b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"


def frame(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def unframe(data: bytes) -> list[bytes]:
    out = []
    while data:
        (n,) = struct.unpack(">H", data[:2])
        out.append(data[2:2 + n])
        data = data[2 + n:]
    return out


@implementer(IQueryHandler)
class EchoHandler:
    """Replies with the query, QR set; queries listed in ``deferred`` wait for the test."""

    def __init__(self):
        self.deferred: dict[bytes, defer.Deferred] = {}
        self.fail = False

    def handle(self, query, peer, over_tcp):
        if self.fail:
            raise RuntimeError("boom")
        reply = query[:2] + bytes([query[2] | 0x80]) + query[3:]
        if query[:2] in self.deferred:
            d = self.deferred[query[:2]]
            d.addCallback(lambda _: reply)
            return d
        return reply


class FakeUDPTransport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((data, addr))


def udp(handler):
    stats = ServiceStats("dns")
    proto = DNSDatagramProtocol(handler, stats, reactor=task.Clock())
    proto.makeConnection(FakeUDPTransport())
    return proto, stats


def tcp(handler, clock=None, **kwargs):
    stats = ServiceStats("dns")
    factory = DNSStreamFactory(handler, stats, clock or task.Clock(), idle_timeout=10, **kwargs)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, stats


def test_udp_reply_goes_back_to_sender():
    proto, stats = udp(EchoHandler())
    proto.datagramReceived(QUERY, ("127.0.0.1", 5353))
    assert proto.transport.sent == []  # batched until the reactor has drained the socket
    proto.reactor.advance(0)
    [(data, addr)] = proto.transport.sent
    assert addr == ("127.0.0.1", 5353) and data[2] & 0x80 and data[:2] == QUERY[:2]
    assert stats["requests"] == 0  # counters are flushed once a second, off the hot path
    proto.reactor.advance(1)
    assert stats["requests"] == 1 and stats["bytes_in"] == len(QUERY) and stats["bytes_out"] == len(data)


def test_udp_handler_exception_becomes_servfail():
    handler = EchoHandler()
    handler.fail = True
    proto, stats = udp(handler)
    proto.datagramReceived(QUERY, ("127.0.0.1", 1))
    proto.reactor.advance(0)
    [(data, _)] = proto.transport.sent
    assert data[3] & 0x0F == dnswire.SERVFAIL and data[:2] == QUERY[:2]
    assert data[12:] == QUERY[12:]  # the question is echoed
    assert stats["errors"] == 1


def test_udp_handler_exception_on_garbage_is_a_drop():
    handler = EchoHandler()
    handler.fail = True
    proto, _ = udp(handler)
    proto.datagramReceived(b"\x01\x02", ("127.0.0.1", 1))
    proto.reactor.advance(0)
    assert proto.transport.sent == []


def test_udp_deferred_reply():
    handler = EchoHandler()
    handler.deferred[b"\xab\xcd"] = d = defer.Deferred()
    proto, _ = udp(handler)
    proto.datagramReceived(QUERY, ("127.0.0.1", 1))
    assert proto.transport.sent == []
    d.callback(None)
    assert len(proto.transport.sent) == 1


def test_udp_replies_sent_in_batches():
    proto, _ = udp(EchoHandler())
    for i in range(40):
        proto.datagramReceived(QUERY, ("127.0.0.1", i))
    assert len(proto.transport.sent) == 32  # a full batch goes at once
    proto.reactor.advance(0)
    assert [addr[1] for _, addr in proto.transport.sent] == list(range(40))


def test_udp_unbatched():
    stats = ServiceStats("dns")
    proto = DNSDatagramProtocol(EchoHandler(), stats, reactor=task.Clock(), reply_batch=0)
    proto.makeConnection(FakeUDPTransport())
    proto.datagramReceived(QUERY, ("127.0.0.1", 1))
    assert len(proto.transport.sent) == 1


def test_udp_pending_replies_sent_on_stop():
    proto, _ = udp(EchoHandler())
    transport = proto.transport
    proto.datagramReceived(QUERY, ("127.0.0.1", 1))
    proto.doStop()  # the port still has its socket when it stops the protocol
    assert len(transport.sent) == 1


@pytest_twisted.ensureDeferred
async def test_udp_sender_on_a_real_port_is_its_sockets_sendto():
    # The fast path: the socket handed out by ISystemHandle.getHandle(), not Port.write.
    port = reactor.listenUDP(0, DNSDatagramProtocol(EchoHandler(), ServiceStats("dns"), reactor=reactor),
                             interface="127.0.0.1")
    try:
        send = datagram_sender(port)
        assert send == port.getHandle().sendto
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            send(b"reply", client.getsockname())
            assert client.recv(100) == b"reply"
    finally:
        await port.stopListening()


@implementer(ISystemHandle)
class OpaqueHandleTransport(FakeUDPTransport):
    """A transport whose system handle is not a socket (another reactor's kind)."""

    def getHandle(self):
        return object()


class TooLongTransport(FakeUDPTransport):
    def write(self, data, addr):
        raise error.MessageLengthError("message too long")


def test_udp_sender_falls_back_to_write():
    for transport in (FakeUDPTransport(), OpaqueHandleTransport()):
        datagram_sender(transport)(b"x", ("127.0.0.1", 9))
        assert transport.sent == [(b"x", ("127.0.0.1", 9))]


def test_peer_text_is_the_frames_format():
    assert peer_text(("127.0.0.1", 53)) == "127.0.0.1:53"
    assert peer_text(("::1", 5353, 0, 0)) == "[::1]:5353"  # IPv6 peers come as 4-tuples


def test_udp_fallback_send_failure_is_a_counted_drop():
    stats = ServiceStats("dns")
    proto = DNSDatagramProtocol(EchoHandler(), stats, reactor=task.Clock(), reply_batch=0)
    proto.makeConnection(TooLongTransport())
    proto.datagramReceived(QUERY, ("127.0.0.1", 1))  # no exception escapes
    assert stats["send_failures"] == 1 and stats["errors"] == 1


def test_tcp_pipelined_queries_coalesced_in_one_write():
    proto, transport, stats = tcp(EchoHandler())
    q2 = b"\x00\x02" + QUERY[2:]
    writes = []
    transport.write = writes.append
    proto.dataReceived(frame(QUERY) + frame(q2))
    assert len(writes) == 1
    replies = unframe(writes[0])
    assert [r[:2] for r in replies] == [b"\xab\xcd", b"\x00\x02"]
    assert stats["requests"] == 2


def test_tcp_split_frames_are_reassembled():
    proto, transport, _ = tcp(EchoHandler())
    data = frame(QUERY)
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert unframe(transport.value())[0][:2] == QUERY[:2]


def test_tcp_out_of_order_replies():
    handler = EchoHandler()
    handler.deferred[b"\xab\xcd"] = slow = defer.Deferred()
    proto, transport, _ = tcp(handler)
    q2 = b"\x00\x02" + QUERY[2:]
    proto.dataReceived(frame(QUERY) + frame(q2))
    assert [r[:2] for r in unframe(transport.value())] == [b"\x00\x02"]
    slow.callback(None)
    assert [r[:2] for r in unframe(transport.value())] == [b"\x00\x02", b"\xab\xcd"]


def test_tcp_bad_length_closes():
    proto, transport, stats = tcp(EchoHandler())
    proto.dataReceived(b"\x00\x03abc")
    assert transport.disconnecting and stats["errors"] == 1


def test_tcp_oversized_message_closes():
    proto, transport, _ = tcp(EchoHandler(), max_message=512)
    proto.dataReceived(struct.pack(">H", 513))
    assert transport.disconnecting


def test_tcp_idle_timeout_uses_injected_clock():
    clock = task.Clock()
    proto, transport, stats = tcp(EchoHandler(), clock)
    clock.advance(9)
    proto.dataReceived(frame(QUERY))
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting and stats["tcp_idle_timeouts"] == 1


def test_tcp_not_idle_while_a_query_is_in_flight():
    clock = task.Clock()
    handler = EchoHandler()
    handler.deferred[b"\xab\xcd"] = slow = defer.Deferred()
    proto, transport, _ = tcp(handler, clock)
    proto.dataReceived(frame(QUERY))
    clock.advance(11)
    assert not transport.disconnecting
    slow.callback(None)
    clock.advance(11)
    assert transport.disconnecting


def test_tcp_handler_exception_becomes_servfail():
    handler = EchoHandler()
    handler.fail = True
    proto, transport, _ = tcp(handler)
    proto.dataReceived(frame(QUERY))
    [reply] = unframe(transport.value())
    assert reply[3] & 0x0F == dnswire.SERVFAIL
    assert not transport.disconnecting


def test_tcp_several_messages_per_reply():
    @implementer(IQueryHandler)
    class Multi:
        def handle(self, query, peer, over_tcp):
            return [b"a" * 12, b"b" * 12]

    proto, transport, _ = tcp(Multi())
    proto.dataReceived(frame(QUERY))
    assert unframe(transport.value()) == [b"a" * 12, b"b" * 12]


def test_tcp_in_flight_limit_pauses_reading():
    handler = EchoHandler()
    handler.deferred[b"\xab\xcd"] = slow = defer.Deferred()
    proto, transport, _ = tcp(handler, max_in_flight=1)
    proto.dataReceived(frame(QUERY))
    assert transport.producerState == "paused"
    slow.callback(None)
    assert transport.producerState == "producing"
