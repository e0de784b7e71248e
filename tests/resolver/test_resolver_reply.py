"""Upstream reply decoding: the same records as dnspython's Message, and bounded failures."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_netapps.resolver.reply import ReplyError, decode_reply

RECORDS = [
    ("www.example.test.", "A", "192.0.2.1"), ("www.example.test.", "A", "192.0.2.2"),
    ("example.test.", "NS", "ns1.example.test."), ("ns1.example.test.", "A", "192.0.2.53"),
    ("ns1.example.test.", "AAAA", "2001:db8::53"), ("alias.example.test.", "CNAME", "www.example.test."),
    ("example.test.", "SOA", "ns1.example.test. h.example.test. 1 2 3 4 60"),
    ("example.test.", "MX", "10 mail.example.test."), ("t.example.test.", "TXT", '"a b" "c"'),
    ("_s._tcp.example.test.", "SRV", "0 1 25 mail.example.test."),
]


def normalise(rrsets):
    return sorted((str(r.name), r.rdtype, r.ttl, sorted(rd.to_text() for rd in r)) for r in rrsets)


@given(
    st.lists(st.tuples(st.integers(0, 2), st.sampled_from(RECORDS), st.integers(0, 86400)), max_size=12),
    st.booleans(), st.sampled_from([0, 3]), st.booleans(),
)
@settings(max_examples=200)
def test_same_records_as_dnspython(records, edns, rcode, aa):
    query = dns.message.make_query("www.example.test.", "A", use_edns=0 if edns else False)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if aa:
        response.flags |= dns.flags.AA
    for section, (name, rdtype, text), ttl in records:
        target = (response.answer, response.authority, response.additional)[section]
        rrset = dns.rrset.from_text(name, ttl, "IN", rdtype, text)
        for existing in target:
            if existing.name == rrset.name and existing.rdtype == rrset.rdtype:
                existing.union_update(rrset)
                existing.ttl = min(existing.ttl, ttl)
                break
        else:
            target.append(rrset)
    wire = response.to_wire(max_size=65535)
    ours, theirs = decode_reply(wire), dns.message.from_wire(wire)
    assert (ours.id, ours.flags, ours.rcode(), ours.edns) == (theirs.id, theirs.flags, theirs.rcode(), theirs.edns)
    assert ours.question[0].name == theirs.question[0].name
    for a, b in ((ours.answer, theirs.answer), (ours.authority, theirs.authority), (ours.additional, theirs.additional)):
        assert normalise(a) == normalise(b)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_arbitrary_bytes_fail_cleanly(data):
    try:
        decode_reply(b"\x12\x34\x84\x00\x00\x01" + data)
    except (ReplyError, dns.exception.DNSException):
        pass


def test_extended_rcode_and_truncation():
    query = dns.message.make_query("a.test.", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.BADVERS)
    assert decode_reply(response.to_wire()).rcode() == dns.rcode.BADVERS
    whole = dns.message.make_response(query)
    whole.answer.append(dns.rrset.from_text("a.test.", 60, "IN", "A", "192.0.2.1"))
    wire = whole.to_wire()
    for cut in range(12, len(wire)):
        try:
            decode_reply(wire[:cut])
        except (ReplyError, dns.exception.DNSException):
            continue
        raise AssertionError(f"a reply cut at {cut} bytes decoded")
