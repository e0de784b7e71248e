"""Upstream reply decoding: the same records as dnspython's Message, and bounded failures."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_netapps.resolver.reply import ReplyError, decode_reply, sent_question
from twisted_netapps.dnswire import build_query

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


QNAMES = ["www.example.test.", "WWW.Example.TEST.", "example.test.", "ns1.example.test.", "alias.example.test."]


@given(
    st.sampled_from(QNAMES),
    st.lists(st.tuples(st.integers(0, 2), st.sampled_from(RECORDS), st.integers(0, 86400)), max_size=12),
    st.booleans(), st.booleans(),
)
@settings(max_examples=300)
def test_our_question_and_name_reuse_give_dnspythons_records(qname, records, merge, echo_differs):
    """Given the question we sent, the decode (names reused for pointers, one hash
    per rdata, duplicates and separate RRsets of one name/type in a section)
    still yields exactly dnspython's records, names with their case."""
    name = dns.name.from_text(qname)
    query_wire = build_query(0x1234, name, dns.rdatatype.A, recursion=False, edns_payload=1232)
    response = dns.message.make_response(dns.message.from_wire(query_wire))
    if echo_differs:  # the server echoes the name in another case: decoded the slow way
        response.question[0].name = dns.name.from_text(qname.swapcase())
    for section, (owner, rdtype, text), ttl in records:
        target = (response.answer, response.authority, response.additional)[section]
        rrset = dns.rrset.from_text(owner, ttl, "IN", rdtype, text)
        for existing in target if merge else ():
            if existing.name == rrset.name and existing.rdtype == rrset.rdtype:
                existing.union_update(rrset)
                existing.ttl = min(existing.ttl, ttl)
                break
        else:
            target.append(rrset)  # unmerged: one name/type may come in several RRsets, even repeated
    wire = response.to_wire(max_size=65535)
    sent = sent_question(name, dns.rdatatype.A, dns.rdataclass.IN, query_wire)
    ours, theirs = decode_reply(wire, sent), dns.message.from_wire(wire)
    assert str(ours.question[0].name) == str(theirs.question[0].name)
    assert (ours.question[0].name is name) == (not echo_differs)
    for a, b in ((ours.answer, theirs.answer), (ours.authority, theirs.authority), (ours.additional, theirs.additional)):
        assert normalise(a) == normalise(b)
        for rrset in a:
            assert len(rrset.items) == len(set(rrset)) and all(rd in rrset for rd in rrset)


def test_names_behind_pointers_are_reused():
    # root referral for www.example.c1.: c1. points into the question, the
    # glue's owner into the NS record's RDATA.
    name = dns.name.from_text("www.example.c1.")
    query_wire = build_query(7, name, dns.rdatatype.A, recursion=False, edns_payload=None)
    response = dns.message.make_response(dns.message.from_wire(query_wire))
    response.authority.append(dns.rrset.from_text("c1.", 172800, "IN", "NS", "ns1.c1."))
    response.additional.append(dns.rrset.from_text("ns1.c1.", 172800, "IN", "A", "127.0.0.3"))
    reply = decode_reply(response.to_wire(), sent_question(name, dns.rdatatype.A, dns.rdataclass.IN, query_wire))
    (ns,), (glue,) = reply.authority, reply.additional
    assert ns.name == dns.name.from_text("c1.") and ns.name.labels == name.labels[2:]
    assert glue.name is ns[0].target
    assert glue.ttl == 172800 and [rd.address for rd in glue] == ["127.0.0.3"]


def test_address_records_are_shared_immutable_objects_and_the_memo_is_bounded(monkeypatch):
    from twisted_netapps.resolver import reply as reply_module

    def referral(qname, address, address6):
        response = dns.message.make_response(dns.message.make_query(qname, "A"))
        response.authority.append(dns.rrset.from_text("test.", 172800, "IN", "NS", "ns1.test."))
        response.additional.append(dns.rrset.from_text("ns1.test.", 172800, "IN", "A", address))
        response.additional.append(dns.rrset.from_text("ns1.test.", 172800, "IN", "AAAA", address6))
        return decode_reply(response.to_wire())

    one = referral("a.test.", "192.0.2.53", "2001:db8::53")
    two = referral("b.test.", "192.0.2.53", "2001:db8::53")
    other = referral("c.test.", "192.0.2.54", "2001:db8::54")
    for index in (0, 1):
        assert one.additional[index][0] is two.additional[index][0]  # the same value, one object
        assert other.additional[index][0] is not one.additional[index][0]
    assert [rd.address for rd in other.additional[0]] == ["192.0.2.54"]
    assert [rd.address for rd in two.additional[1]] == ["2001:db8::53"]
    monkeypatch.setattr(reply_module, "_MAX_ADDRESSES", 3)
    for k in range(10):
        referral("d.test.", f"192.0.2.{k}", f"2001:db8::{k}")
        assert len(reply_module._ADDRESSES) <= 3
