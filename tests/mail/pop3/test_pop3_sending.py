"""ReplyWriter, the seam between POP3 replies and the transport: direct sends on a real
socket only while nothing is queued in Twisted, and the plain path everywhere else."""

from __future__ import annotations

import socket

import pytest
from twisted.internet import interfaces
from twisted.internet.testing import StringTransport
from zope.interface import implementer, directlyProvides

from twisted_netapps.mail.pop3.sending import ReplyWriter, direct_socket


@implementer(interfaces.ITCPTransport)
class TCPTransport(StringTransport):
    """A transport whose handle is a real (connected, non-blocking) socket, as Twisted's TCP one."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def getHandle(self):
        return self.sock


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def drain(peer: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_plain_transports_get_transport_write():
    transport = StringTransport()
    writer = ReplyWriter(transport)
    assert direct_socket(transport) is None and not writer.direct
    writer.write(b"+OK\r\n")
    assert transport.value() == b"+OK\r\n" and transport.producer is None


def test_tls_transports_never_get_direct_sends(pair):
    transport = TCPTransport(pair[0])
    directlyProvides(transport, interfaces.ISSLTransport, interfaces.ITCPTransport)
    assert direct_socket(transport) is None


def test_direct_send_when_nothing_is_queued(pair):
    ours, peer = pair
    transport = TCPTransport(ours)
    writer = ReplyWriter(transport)
    assert writer.direct
    writer.write(b"+OK 1 octets\r\nx\r\n.\r\n")
    assert drain(peer) == b"+OK 1 octets\r\nx\r\n.\r\n"
    assert transport.value() == b"" and transport.producer is None


def test_what_the_socket_does_not_take_queues_and_later_writes_follow_it(pair):
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = TCPTransport(ours)
    writer = ReplyWriter(transport)
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffer holds
    writer.write(big)
    direct = drain(peer)
    assert 0 < len(direct) < len(big)
    assert transport.value() == big[len(direct):]  # the rest, in order, via Twisted
    assert not writer.direct and transport.producer is not None and not transport.streaming
    writer.write(b"+OK next\r\n")  # must not overtake the queued bytes
    assert drain(peer) == b"" and transport.value().endswith(b"+OK next\r\n")
    # Twisted's buffer drains: it asks the registered pull producer for more.
    transport.producer.resumeProducing()
    assert writer.direct and transport.producer is None
    writer.write(b"+OK direct again\r\n")
    assert drain(peer) == b"+OK direct again\r\n"


def test_streaming_goes_through_twisted_then_waits_for_the_drain(pair):
    ours, peer = pair
    transport = TCPTransport(ours)
    writer = ReplyWriter(transport)
    stream = object()
    writer.start_streaming(stream, True)
    assert transport.producer is stream and not writer.direct
    writer.write(b"chunk")
    assert transport.value() == b"chunk" and drain(peer) == b""
    writer.stop_streaming()
    assert transport.producer is not None and transport.producer is not stream and not writer.direct
    transport.producer.resumeProducing()
    assert writer.direct


def test_stop_direct_for_tls(pair):
    ours, peer = pair
    transport = TCPTransport(ours)
    writer = ReplyWriter(transport)
    writer.stop_direct()
    writer.write(b"+OK\r\n")
    assert transport.value() == b"+OK\r\n" and drain(peer) == b"" and transport.producer is None


def test_a_closed_socket_falls_back_to_twisted(pair):
    ours, peer = pair
    transport = TCPTransport(ours)
    writer = ReplyWriter(transport)
    peer.close()
    writer.write(b"+OK\r\n" * 100000)  # EPIPE / ECONNRESET: Twisted's write path reports it
    assert transport.value()
