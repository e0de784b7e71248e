"""Hypothesis on the query path: any bytes -> a well-formed reply or a drop, never an exception."""

from __future__ import annotations

import struct
from pathlib import Path

import dns.message
import dns.name
import dns.opcode
import dns.rcode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted_netapps import dnswire
from twisted_netapps.dns.responder import Responder
from twisted_netapps.dns.zones import load_zone

DEMO = Path(__file__).resolve().parents[2] / "twisted_netapps" / "data" / "zones"
RESPONDER = Responder({dns.name.from_text("example.test."): load_zone("example.test.", DEMO / "example.test.zone")})
PEER = ("127.0.0.1", 5353)
VALID = dns.message.make_query("www.example.test", "A", use_edns=0).to_wire()


def check_reply(query: bytes, reply, over_tcp: bool) -> None:
    if reply is None:
        return
    messages = [reply] if isinstance(reply, bytes) else reply
    for message in messages:
        assert len(message) >= 12
        assert message[:2] == query[:2]  # same ID
        assert dnswire.is_response(message)
        assert over_tcp or len(message) <= 65535
        if (message[2] >> 3) & 0x0F != dns.opcode.UPDATE:  # dnspython insists on UPDATE's own rules
            dns.message.from_wire(message, question_only=True)  # parseable by a real client


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes(data, over_tcp):
    check_reply(data, RESPONDER.handle(data, PEER, over_tcp), over_tcp)


@settings(max_examples=400)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.booleans())
def test_mutated_valid_query(mutations, over_tcp):
    data = bytearray(VALID)
    for index, value in mutations:
        data[index] = value
    data = bytes(data)
    check_reply(data, RESPONDER.handle(data, PEER, over_tcp), over_tcp)


@settings(max_examples=200)
@given(st.binary(min_size=12, max_size=12), st.binary(max_size=80))
def test_header_then_garbage_is_formerr_or_drop(header, tail):
    data = header + tail
    reply = RESPONDER.handle(data, PEER, False)
    check_reply(data, reply, False)
    if header[2] & 0x80:
        assert reply is None  # never answer a response


LABEL = st.binary(min_size=1, max_size=63)


@settings(max_examples=200)
@given(st.lists(LABEL, min_size=0, max_size=6), st.sampled_from(["A", "AAAA", "MX", "TXT", "ANY", "SRV", "NS"]))
def test_any_name_gets_an_answer(labels, rdtype):
    try:
        name = dns.name.Name(labels + [b""])
    except dns.name.NameTooLong:
        return
    query = dns.message.make_query(name, rdtype)
    reply = dns.message.from_wire(RESPONDER.handle(query.to_wire(), PEER, False))
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED)


def _header(qdcount=1):
    return struct.pack(">HHHHHH", 0x4242, 0x0100, qdcount, 0, 0, 0)


def test_compression_pointer_loop_is_formerr():
    data = _header() + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # the qname points at itself
    reply = RESPONDER.handle(data, PEER, False)
    assert reply[3] & 0x0F == dns.rcode.FORMERR and reply[:2] == b"\x42\x42"


def test_compression_pointer_forward_is_formerr():
    data = _header() + b"\x03www\xc0\x20" + b"\x00\x01\x00\x01" + b"\x00" * 20
    assert RESPONDER.handle(data, PEER, False)[3] & 0x0F == dns.rcode.FORMERR


def test_oversized_name_is_formerr():
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"  # 321 bytes > 255
    reply = RESPONDER.handle(_header() + name + b"\x00\x01\x00\x01", PEER, False)
    assert reply[3] & 0x0F == dns.rcode.FORMERR and len(reply) == 12  # no question echoed


def test_truncated_question_is_formerr():
    reply = RESPONDER.handle(_header() + b"\x03www\x07exam", PEER, False)
    assert reply[3] & 0x0F == dns.rcode.FORMERR


def test_error_reply_helper_never_answers_responses_or_fragments():
    assert dnswire.error_reply(b"\x00" * 11, 2) is None
    assert dnswire.error_reply(b"\x00\x00\x80" + b"\x00" * 9, 2) is None
