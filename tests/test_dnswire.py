"""The shared DNS wire layer: header helpers, the plain-query parser, error replies, size limits."""

from __future__ import annotations

import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_netapps import dnswire
from twisted_netapps.dnswire import parse_plain_query, question_name

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20)
names = st.lists(labels, min_size=0, max_size=6).map(lambda ls: dns.name.from_text(".".join(ls) + ".") if ls else dns.name.root)


def test_flag_constants_are_dnspythons():
    assert (dnswire.QR, dnswire.AA, dnswire.TC, dnswire.RD, dnswire.RA, dnswire.AD, dnswire.CD) == (
        dns.flags.QR, dns.flags.AA, dns.flags.TC, dns.flags.RD, dns.flags.RA, dns.flags.AD, dns.flags.CD)
    assert dnswire.OPCODE_MASK == dns.opcode.to_flags(15)
    assert (dnswire.FORMERR, dnswire.SERVFAIL, dnswire.NXDOMAIN, dnswire.NOTIMP, dnswire.REFUSED) == (
        dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN, dns.rcode.NOTIMP, dns.rcode.REFUSED)


@given(st.binary(max_size=600))
@settings(max_examples=400)
def test_arbitrary_bytes_never_raise(data):
    query = parse_plain_query(data)
    if query is not None:
        # whatever the fast path accepts, dnspython reads the same question
        message = dns.message.from_wire(data)
        assert message.id == query.id
        assert message.question[0].rdtype == query.qtype


@given(names, st.sampled_from([1, 2, 5, 6, 15, 16, 28, 33, 65, 97, 255, 257]), st.booleans(),
       st.integers(0, 65535), st.integers(0, 0xFFFF), st.booleans())
def test_plain_queries_match_dnspython(name, qtype, edns, payload, qid, rd):
    message = dns.message.make_query(name, qtype, use_edns=0 if edns else False, payload=max(512, payload))
    message.id = qid
    if not rd:
        message.flags &= ~dns.flags.RD
    data = message.to_wire()
    query = parse_plain_query(data)
    assert query is not None
    assert (query.id, query.qtype, query.qclass, query.rd) == (qid, qtype, 1, rd)
    assert query.edns_payload == (max(512, payload) if edns else None)
    assert dns.name.from_wire(query.key, 0)[0] == name
    assert query.key == name.canonicalize().to_wire() + struct.pack("!HH", qtype, 1)


@given(st.binary(min_size=1, max_size=40))
def test_mutated_queries_never_raise(tail):
    data = dns.message.make_query("www.example.test.", "A", use_edns=0).to_wire()
    for cut in range(len(data)):
        parse_plain_query(data[:cut] + tail)


def test_type_bytes_that_look_like_letters_are_not_lowercased():
    https = parse_plain_query(dns.message.make_query("a.test.", 65).to_wire())  # 0x0041 = "A"
    other = parse_plain_query(dns.message.make_query("a.test.", 97).to_wire())  # 0x0061 = "a"
    assert https.key != other.key


def test_compression_pointer_in_question_goes_to_the_slow_path():
    data = bytearray(dns.message.make_query("www.example.test.", "A").to_wire())
    data[12:12 + 18] = b"\xc0\x0c"  # a pointer to itself
    assert parse_plain_query(bytes(data[:14]) + b"\x00\x01\x00\x01") is None


def test_responses_and_other_opcodes_are_not_plain_queries():
    response = dns.message.make_response(dns.message.make_query("a.test.", "A"))
    assert parse_plain_query(response.to_wire()) is None
    notify = dns.message.make_query("a.test.", "SOA")
    notify.set_opcode(4)
    assert parse_plain_query(notify.to_wire()) is None




@given(names, st.sampled_from([1, 28, 15, 255]), st.booleans())
@settings(max_examples=200)
def test_question_name_is_dnspythons_reading_of_the_question(name, qtype, edns):
    message = dns.message.make_query(name, qtype, use_edns=0 if edns else False)
    query = parse_plain_query(message.to_wire())
    assert query is not None
    got = question_name(query)
    assert got == name and got.labels == dns.name.from_wire(query.key, 0)[0].labels
    assert all(label == label.lower() for label in got.labels)


@given(names, st.booleans(), st.integers(0, 65535),
       st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=40)), max_size=4))
@settings(max_examples=200)
def test_edns_options_and_do_bit(name, do, payload, options):
    message = dns.message.make_query(
        name, "A", use_edns=0, payload=payload, want_dnssec=do,
        options=[dns.edns.GenericOption(code, data) for code, data in options],
    )
    data = message.to_wire()
    query = parse_plain_query(data)
    assert query is not None
    assert (query.edns_payload, query.do) == (payload, do)
    assert query.end == 12 + len(query.question) and data[12:query.end] == query.question
    # an option whose length runs past the end is not plain (dnspython would refuse it)
    if options:
        assert parse_plain_query(data[:-1]) is None


@given(st.binary(max_size=120))
def test_scan_and_parse_agree(data):
    scan, query = dnswire.scan_plain_query(data), parse_plain_query(data)
    assert (scan is None) == (query is None)
    if scan is not None:
        root, end, edns_payload, do = scan
        assert (end, edns_payload, do) == (query.end, query.edns_payload, query.do)
        assert data[root] == 0 and query.key == data[12:root].lower() + data[root:end]


def test_plain_query_shape_limits():
    base = dns.message.make_query("a.test.", "A", use_edns=0)
    other_version = dns.message.make_query("a.test.", "A", use_edns=1)
    assert parse_plain_query(other_version.to_wire()) is None  # BADVERS is the codec's to answer
    assert parse_plain_query(base.to_wire() + b"\x00") is None  # trailing junk
    two = dns.message.make_query("a.test.", "A")
    two.question.append(two.question[0])
    assert parse_plain_query(two.to_wire()) is None
    long_name = dns.name.from_text(".".join(["a" * 63] * 3 + ["b" * 61]) + ".")  # 255 bytes: the longest
    assert parse_plain_query(dns.message.make_query(long_name, "A").to_wire()) is not None
    too_long = b"\x3f" + b"a" * 63
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + too_long * 4 + b"\x00\x00\x01\x00\x01"
    assert parse_plain_query(data) is None  # 257-byte name


@given(st.binary(max_size=300), st.integers(0, 15), st.booleans(), st.one_of(st.none(), st.integers(512, 4096)))
@settings(max_examples=300)
def test_error_reply_never_raises_and_is_a_reply(data, rcode, ra, opt):
    reply = dnswire.error_reply(data, rcode, recursion_available=ra, opt_payload=opt)
    if len(data) < 12 or data[2] & 0x80:
        assert reply is None
        return
    assert reply[:2] == data[:2] and dnswire.is_response(reply) and dnswire.rcode_of(reply) == rcode
    message = dns.message.from_wire(reply)
    assert bool(message.flags & dns.flags.RA) == ra
    assert message.edns == (-1 if opt is None else 0)
    assert message.opcode() == (dnswire.flags_of(data) & dnswire.OPCODE_MASK) >> 11


def test_error_reply_keeps_id_opcode_rd_cd_and_question():
    query = dns.message.make_query("www.example.test.", "A")
    query.flags |= dns.flags.CD
    query.id = 0x4242
    data = query.to_wire()
    reply = dns.message.from_wire(dnswire.error_reply(data, dnswire.REFUSED, opt_payload=1232))
    assert reply.id == 0x4242 and reply.rcode() == dns.rcode.REFUSED
    assert reply.flags & dns.flags.RD and reply.flags & dns.flags.CD and not reply.flags & dns.flags.RA
    assert reply.question == query.question and reply.payload == 1232
    # a question that cannot be read plainly is left out, not guessed
    cut = dns.message.from_wire(dnswire.error_reply(data[:20], dnswire.FORMERR))
    assert not cut.question


@pytest.mark.parametrize("over_tcp, payload, expected", [
    (True, None, 65535), (True, 4096, 65535), (False, None, 512), (False, 100, 512),
    (False, 1232, 1232), (False, 4096, 1400),
])
def test_reply_size_limit(over_tcp, payload, expected):
    assert dnswire.reply_size_limit(over_tcp, payload, 1400) == expected


@given(st.binary(max_size=80), st.integers(0, 90))
def test_name_walkers_never_raise_anything_else(data, offset):
    end = dnswire.question_end(data, offset)
    assert end is None or offset < end <= len(data)
    try:
        assert dnswire.skip_name(data, offset) <= len(data)
    except dnswire.WireError:
        pass


def test_build_query_is_what_dnspython_reads():
    data = dnswire.build_query(7, dns.name.from_text("Mail.Example."), 15, recursion=True, edns_payload=1232)
    message = dns.message.from_wire(data)
    assert message.id == 7 and message.flags & dns.flags.RD and message.payload == 1232
    assert str(message.question[0].name) == "Mail.Example." and message.question[0].rdtype == 15
    assert parse_plain_query(data).key == b"\x04mail\x07example\x00\x00\x0f\x00\x01"
