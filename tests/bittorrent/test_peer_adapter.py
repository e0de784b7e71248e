"""The Twisted peer adapter on a fake transport and clock: handshake deadline, refusals."""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_netapps.bittorrent.peer import wire
from twisted_netapps.bittorrent.peer.protocol import HANDSHAKE_TIMEOUT, PeerProtocol, TorrentDirectory


def _incoming():
    clock = Clock()
    proto = PeerProtocol(TorrentDirectory(clock))
    transport = StringTransport()
    proto.makeConnection(transport)
    return clock, proto, transport


def test_a_trickled_handshake_is_cut_at_the_deadline():
    clock, proto, transport = _incoming()
    for i in range(len(wire.PSTR)):  # a byte a second, then nothing more
        proto.dataReceived(wire.PSTR[i:i + 1])
        clock.advance(1)
    clock.advance(HANDSHAKE_TIMEOUT - len(wire.PSTR) - 0.5)
    assert not transport.disconnecting
    clock.advance(0.5)
    assert transport.disconnecting


def test_encrypted_handshake_is_closed_at_once():
    clock, proto, transport = _incoming()
    proto.dataReceived(b"\xd3\x9a\x01" * 30)
    assert transport.disconnecting and transport.value() == b""


def test_unknown_info_hash_is_refused_without_a_reply():
    clock, proto, transport = _incoming()
    proto.dataReceived(wire.handshake(b"\x42" * 20, b"-XX0000-" + b"0" * 12))
    assert transport.disconnecting and transport.value() == b""
    proto.connectionLost(None)
    clock.advance(HANDSHAKE_TIMEOUT + 1)  # the deadline was cancelled with the connection
