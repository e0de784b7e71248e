"""Peer wire codec: round trips, arbitrary splits, bounded parsing."""

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.bittorrent.peer import wire

IH, PID = b"\x01" * 20, b"-NA0001-" + b"x" * 12

u32 = st.integers(0, 2**32 - 1)
messages = st.one_of(
    st.just((wire.KEEPALIVE, wire.KeepAlive())),
    st.just((wire.CHOKE_MESSAGE, wire.Choke())),
    st.just((wire.UNCHOKE_MESSAGE, wire.Unchoke())),
    st.just((wire.INTERESTED_MESSAGE, wire.Interested())),
    st.just((wire.NOT_INTERESTED_MESSAGE, wire.NotInterested())),
    st.just((wire.HAVE_ALL_MESSAGE, wire.HaveAll())),
    st.just((wire.HAVE_NONE_MESSAGE, wire.HaveNone())),
    u32.map(lambda i: (wire.have(i), wire.Have(i))),
    u32.map(lambda i: (wire.allowed_fast(i), wire.AllowedFast(i))),
    st.binary(max_size=300).map(lambda b: (wire.bitfield(b), wire.Bitfield(b))),
    st.tuples(u32, u32, u32).map(lambda t: (wire.request(*t), wire.Request(*t))),
    st.tuples(u32, u32, u32).map(lambda t: (wire.cancel(*t), wire.Cancel(*t))),
    st.tuples(u32, u32, u32).map(lambda t: (wire.reject(*t), wire.Reject(*t))),
    st.tuples(u32, u32, st.binary(max_size=16384)).map(lambda t: (wire.piece(*t), wire.Piece(*t))),
    st.tuples(st.integers(0, 255), st.binary(max_size=200)).map(
        lambda t: (wire.extended(*t), wire.Extended(*t))),
)


@given(st.lists(messages, max_size=20), st.integers(1, 70000))
def test_round_trip_with_any_split(items, chunk):
    stream = wire.handshake(IH, PID) + b"".join(m for m, _ in items)
    reader = wire.WireReader()
    events = []
    for i in range(0, len(stream), chunk):
        events += reader.receive_data(stream[i:i + chunk])
    assert events[0] == wire.Handshake(wire.reserved_bits(), IH, PID)
    assert events[1:] == [e for _, e in items]
    assert not reader.buffer


@given(st.binary(max_size=500))
def test_arbitrary_bytes_never_raise(data):
    reader = wire.WireReader(handshake=False)
    events = reader.receive_data(data)
    assert all(not isinstance(e, wire.ProtocolError) for e in events[:-1])


def test_oversized_message_is_refused_before_buffering():
    reader = wire.WireReader(handshake=False)
    events = reader.receive_data(b"\x7f\xff\xff\xff\x07")
    assert isinstance(events[-1], wire.ProtocolError) and reader.failed and not reader.buffer
    assert reader.receive_data(b"more") == []


def test_encrypted_handshake_is_refused_at_once():
    events = wire.WireReader().receive_data(b"\x8a\x03\xff")
    assert isinstance(events[0], wire.ProtocolError) and "encrypted" in events[0].reason


@pytest.mark.parametrize("message", [b"\0\0\0\x02\x00\x00", b"\0\0\0\x04\x04\0\0\0", b"\0\0\0\x05\x06\0\0\0\0",
                                     b"\0\0\0\x05\x07\0\0\0\0"])
def test_wrong_sizes_are_protocol_errors(message):
    assert isinstance(wire.WireReader(handshake=False).receive_data(message)[-1], wire.ProtocolError)


def test_bitfield_limit_follows_the_torrent():
    reader = wire.WireReader(handshake=False)
    reader.set_piece_count(2_000_000)
    bits = b"\xff" * 250_000
    assert reader.receive_data(wire.bitfield(bits)) == [wire.Bitfield(bits)]


def test_reserved_bits():
    r = wire.reserved_bits()
    assert wire.supports_extensions(r) and wire.supports_fast(r)
    assert not wire.supports_fast(bytes(8))
