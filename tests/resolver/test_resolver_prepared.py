"""Prepared answers (encoded once, served with the client's ID, flags, question case and TTLs) and trimmed upstream replies."""

from __future__ import annotations

import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from hypothesis import given
from hypothesis import strategies as st

from twisted_netapps.dnswire import parse_plain_query, reply_size_limit
from twisted_netapps.resolver.prepared import answer_section, prepare_answer, splice_answer
from twisted_netapps.resolver.reply import trim_reply

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20)
names = st.lists(labels, min_size=0, max_size=6).map(lambda ls: dns.name.from_text(".".join(ls) + ".") if ls else dns.name.root)


def answer(now=1000.0):
    return prepare_answer(
        dns.name.from_text("www.example.test."), dns.rdatatype.A, 1, dns.rcode.NOERROR,
        [dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.1", "192.0.2.2")], [], now,
    )


def test_prepared_reply_patches_id_flags_case_and_ttl():
    prepared = answer()
    query_msg = dns.message.make_query("WWW.Example.TEST.", "A", use_edns=0)
    query_msg.id = 4242
    query = parse_plain_query(query_msg.to_wire())
    reply = dns.message.from_wire(prepared.reply(query, 1042.7, limit=1232, our_payload=1232))
    assert reply.id == 4242
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA and reply.flags & dns.flags.RD
    assert not reply.flags & dns.flags.AA
    assert reply.question[0].name.to_text() == "WWW.Example.TEST."  # the client's own case (0x20)
    assert reply.answer[0].ttl == 258
    assert sorted(r.address for r in reply.answer[0]) == ["192.0.2.1", "192.0.2.2"]
    assert reply.edns == 0 and reply.payload == 1232


def test_prepared_reply_without_edns_has_no_opt_and_truncates_at_512():
    big = prepare_answer(
        dns.name.from_text("big.example.test."), dns.rdatatype.TXT, 1, dns.rcode.NOERROR,
        [dns.rrset.from_text("big.example.test.", 300, "IN", "TXT", *[f'"{"x" * 60} {i}"' for i in range(20)])],
        [], 0.0,
    )
    query = parse_plain_query(dns.message.make_query("big.example.test.", "TXT").to_wire())
    data = big.reply(query, 1.0, limit=reply_size_limit(False, query.edns_payload, 1232), our_payload=1232)
    reply = dns.message.from_wire(data)
    assert len(data) <= 512 and reply.flags & dns.flags.TC and not reply.answer and reply.edns < 0
    full = dns.message.from_wire(big.reply(query, 1.0, limit=65535, our_payload=1232))
    assert len(full.answer[0]) == 20 and not full.flags & dns.flags.TC


def test_ttl_never_goes_below_zero():
    prepared = answer()
    query = parse_plain_query(dns.message.make_query("www.example.test.", "A").to_wire())
    reply = dns.message.from_wire(prepared.reply(query, 99999.0, limit=512, our_payload=1232))
    assert reply.answer[0].ttl == 0


def test_trim_reply_keeps_what_the_core_reads():
    query = dns.message.make_query("www.example.test.", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.1"))
    response.authority.append(dns.rrset.from_text("example.test.", 300, "IN", "NS", "ns1.example.test."))
    response.additional.append(dns.rrset.from_text("ns1.example.test.", 300, "IN", "A", "192.0.2.53"))
    data, answers_only = trim_reply(response.to_wire())
    trimmed = dns.message.from_wire(data)
    assert answers_only and trimmed.id == response.id and trimmed.flags == response.flags
    assert trimmed.answer == response.answer and not trimmed.authority and not trimmed.additional
    # a referral: kept whole
    response.flags &= ~dns.flags.AA
    response.answer = []
    assert trim_reply(response.to_wire()) == (response.to_wire(), False)
    # NXDOMAIN keeps its SOA; FORMERR, TC and BADVERS (extended RCODE in the OPT) stay whole
    response.set_rcode(dns.rcode.NXDOMAIN)
    assert dns.message.from_wire(trim_reply(response.to_wire())[0]).rcode() == dns.rcode.NXDOMAIN
    for rcode in (dns.rcode.FORMERR, dns.rcode.BADVERS):
        response.set_rcode(rcode)
        assert trim_reply(response.to_wire())[0] == response.to_wire()
    response.set_rcode(dns.rcode.NOERROR)
    response.flags |= dns.flags.TC
    assert trim_reply(response.to_wire())[0] == response.to_wire()
    assert trim_reply(b"\x00" * 5) == (b"\x00" * 5, False)


@given(st.binary(max_size=300))
def test_trim_reply_never_raises_and_keeps_valid_replies_decodable(data):
    whole = b"\x12\x34\x84\x00" + data
    trimmed, _ = trim_reply(whole)
    try:
        dns.message.from_wire(whole)
    except (dns.exception.DNSException, ValueError):
        return  # invalid to begin with: nothing to keep
    dns.message.from_wire(trimmed)


# -- serving an upstream answer section as received -------------------------

def upstream_reply(qname, qtype, records, *, ancount=None):
    """A reply to (qname, qtype) with *records* (owner, type, ttl, text) in the answer section."""
    query = dns.message.make_query(qname, qtype, use_edns=0)
    response = dns.message.make_response(query)
    for owner, rdtype, ttl, text in records:
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", rdtype, text))
    wire = response.to_wire()
    qlen = len(dns.name.from_text(qname).to_wire()) + 4
    return wire, qlen, sum(1 for _ in records) if ancount is None else ancount


def test_answer_section_served_byte_for_byte_reads_the_same():
    records = [("alias.example.test.", "CNAME", 300, "www.example.test."),
               ("www.example.test.", "A", 600, "192.0.2.80"), ("www.example.test.", "A", 600, "192.0.2.81")]
    wire, qlen, count = upstream_reply("alias.example.test.", "A", records)
    section = answer_section(wire, qlen, count)
    assert section is not None and section == wire[12 + qlen:wire.rindex(b"\x00\x00\x29")]
    upstream = dns.message.from_wire(wire)
    prepared = splice_answer(qlen, 0, upstream.answer, section, 1000.0)
    # a client asking in another case, with its own ID, gets the same records
    client = dns.message.make_query("ALIAS.example.TEST.", "A", use_edns=0)
    client.id = 4242
    reply = prepared.reply(parse_plain_query(client.to_wire()), 1010.0, limit=1232, our_payload=1232)
    served = dns.message.from_wire(reply)
    assert served.id == 4242 and served.question[0].name.labels[0] == b"ALIAS"
    # (names behind pointers into the question take the client's case, as with any prepared answer)
    assert [(r.name, r.rdtype, sorted(map(str, r))) for r in served.answer] == [
        (r.name, r.rdtype, sorted(str(rd).replace("example.test", "example.TEST") for rd in r))
        for r in upstream.answer
    ]
    assert [r.ttl for r in served.answer] == [290, 590]  # counted down like any prepared answer


def test_answer_section_refuses_what_it_cannot_vouch_for():
    a = [("www.example.test.", "A", 600, "192.0.2.80")]
    wire, qlen, count = upstream_reply("www.example.test.", "A", a)
    assert answer_section(wire, qlen, count) is not None
    assert answer_section(wire, qlen, 2) is None  # fewer records than expected
    mx = [("example.test.", "MX", 300, "10 mail.example.test.")]
    assert answer_section(*upstream_reply("example.test.", "MX", mx)) is None  # names in RDATA: encode instead
    # an owner name pointing into the header (whose bytes differ in our reply)
    start = 12 + qlen
    assert wire[start:start + 2] == b"\xc0\x0c"
    assert answer_section(wire[:start] + b"\xc0\x04" + wire[start + 2:], qlen, 1) is None
    # ... or pointing at an A record's address bytes that are themselves a pointer into the header
    forged = bytearray(wire)
    address = start + 2 + 10
    forged[address:address + 4] = b"\xc0\x02\x00\x00"
    second = bytes(forged[:address + 4]) + b"\xc0" + bytes([address]) + struct.pack("!HHIH", 1, 1, 60, 4) + b"\x01\x02\x03\x04"
    assert answer_section(second, qlen, 2) is None
    # TTLs other than the RRsets' (a set whose records disagree): encode instead
    two = [("www.example.test.", "A", 600, "192.0.2.80"), ("www.example.test.", "A", 60, "192.0.2.81")]
    wire2, qlen2, count2 = upstream_reply("www.example.test.", "A", two)
    section = answer_section(wire2, qlen2, count2)
    assert section is not None
    decoded = dns.message.from_wire(wire2).answer  # dnspython keeps the smaller TTL for the set
    assert splice_answer(qlen2, 0, decoded, section, 1000.0) is None
