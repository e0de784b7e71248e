"""bencode: round trips, canonical form, strict and bounded decoding."""

import pytest
from hypothesis import given, strategies as st

from twisted_netapps.bittorrent import bencode
from twisted_netapps.bittorrent.bencode import BencodeError, decode, encode

values = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**64) | st.binary(max_size=64),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.binary(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_canonical(value):
    data = encode(value)
    assert encode(decode(data)) == data


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_bencode_error(data):
    try:
        decode(data)
    except BencodeError:
        pass


def test_known_encodings():
    assert encode({"spam": [b"a", 1], "cow": b"moo"}) == b"d3:cow3:moo4:spaml1:ai1eee"
    assert encode(-3) == b"i-3e"
    assert encode(0) == b"i0e"


@pytest.mark.parametrize("data", [
    b"i03e", b"i-0e", b"ie", b"i-e", b"i1", b"01:a", b"3:ab", b"l", b"d", b"d1:b0:1:a0:e", b"d1:a0:1:a0:e",
    b"di1ei2ee", b"i1ei2e", b"x", b"", b"i 1e", b"i+1e", b"1:", b"-1:a", b"l" * 100 + b"e" * 100,
])
def test_rejects(data):
    with pytest.raises(BencodeError):
        decode(data)


def test_bounds():
    with pytest.raises(BencodeError):
        decode(b"l" * 10 + b"e" * 10, max_depth=5)
    with pytest.raises(BencodeError):
        decode(b"l" + b"i1e" * 20 + b"e", max_items=10)
    with pytest.raises(BencodeError):
        decode(b"5:hello", max_string=4)
    with pytest.raises(BencodeError):  # an absurd length claim is refused, not allocated
        decode(b"99999999999:x")


def test_encode_refuses_what_bencode_cannot_say():
    with pytest.raises(TypeError):
        encode(True)
    with pytest.raises(TypeError):
        encode(1.5)


def test_info_span_is_exact():
    data = b"d8:announce1:x4:infod4:name1:ae1:zi1ee"
    value, span = bencode.decode_with_info_span(data)
    assert data[span[0]:span[1]] == b"d4:name1:ae"
