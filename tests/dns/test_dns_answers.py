"""Answer construction, case by case, through the Responder (bytes in, bytes out)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from twisted_netapps.dns.responder import Responder
from twisted_netapps.dns.zones import load_zone

DEMO = Path(__file__).resolve().parents[2] / "twisted_netapps" / "data" / "zones"
N = dns.name.from_text
PEER = ("127.0.0.1", 40000)


def demo_zones(*origins):
    files = {".": "root.zone", "test.": "test.zone", "example.test.": "example.test.zone",
             "lab.example.test.": "lab.example.test.zone"}
    return {N(o): load_zone(o, DEMO / files[o]) for o in origins}


@pytest.fixture
def example():
    zones = demo_zones("example.test.")
    acl = {N("example.test."): [ipaddress.ip_network("127.0.0.0/8")]}
    return Responder(zones, transfer_acl=acl)


def ask(responder, name, rdtype="A", *, tcp=False, peer=PEER, **kwargs):
    query = dns.message.make_query(name, rdtype, **kwargs)
    wire = responder.handle(query.to_wire(), peer, tcp)
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    return response


def texts(section):
    return sorted(rd.to_text() for rrset in section for rd in rrset)


def test_positive_answer_is_authoritative(example):
    r = ask(example, "www.example.test")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r.answer) == ["127.0.0.1"] and r.answer[0].ttl == 3600


def test_nxdomain_has_soa_with_negative_ttl(example):
    r = ask(example, "nope.example.test")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert not r.answer
    [soa] = r.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name == N("example.test.")
    assert soa.ttl == 300  # min(SOA TTL 3600, minimum 300)


def test_nodata_has_soa(example):
    r = ask(example, "www.example.test", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA and r.authority[0].ttl == 300


def test_empty_non_terminal_is_nodata_not_nxdomain(example):
    for name in ("deep.example.test", "a.deep.example.test"):
        r = ask(example, name)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority[0].rdtype == dns.rdatatype.SOA


def test_cname_chased_within_zone(example):
    r = ask(example, "alias2.example.test", "AAAA")
    assert [(rr.name.to_text(), rr.rdtype) for rr in r.answer] == [
        ("alias2.example.test.", dns.rdatatype.CNAME),
        ("alias.example.test.", dns.rdatatype.CNAME),
        ("www.example.test.", dns.rdatatype.AAAA),
    ]
    assert r.flags & dns.flags.AA


def test_cname_query_returns_the_cname_only(example):
    r = ask(example, "alias.example.test", "CNAME")
    assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.CNAME]


def test_cname_to_missing_name_is_nxdomain(tmp_path):
    path = tmp_path / "z"
    path.write_text("$TTL 60\n@ SOA ns h 1 2 3 4 5\n NS ns\nns A 127.0.0.1\n"
                    "dangling CNAME gone\nloop1 CNAME loop2\nloop2 CNAME loop1\nout CNAME www.elsewhere.\n")
    responder = Responder({N("z.test."): load_zone("z.test.", path)})
    r = ask(responder, "dangling.z.test")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.answer[0].rdtype == dns.rdatatype.CNAME  # RFC 6604
    r = ask(responder, "loop1.z.test")  # a loop ends, answered
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 2
    r = ask(responder, "out.z.test")  # leaves our zones: the CNAME alone, no SOA
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1 and not r.authority


def test_cname_followed_into_another_served_zone(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("$TTL 60\n@ SOA ns h 1 2 3 4 5\n NS ns\nns A 127.0.0.1\nx CNAME y.b.test.\n")
    b.write_text("$TTL 60\n@ SOA ns h 1 2 3 4 5\n NS ns\nns A 127.0.0.1\ny A 127.0.0.2\n")
    responder = Responder({N("a.test."): load_zone("a.test.", a), N("b.test."): load_zone("b.test.", b)})
    assert texts(ask(responder, "x.a.test").answer) == ["127.0.0.2", "y.b.test."]


def test_wildcard_synthesis(example):
    r = ask(example, "anything.wild.example.test")
    assert r.answer[0].name == N("anything.wild.example.test.") and texts(r.answer) == ["127.0.0.9"]
    assert r.flags & dns.flags.AA
    r = ask(example, "a.b.c.wild.example.test", "TXT")
    assert texts(r.answer) == ['"synthesised from *.wild"']
    r = ask(example, "anything.wild.example.test", "MX")  # wildcard NODATA
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority[0].rdtype == dns.rdatatype.SOA


def test_wildcard_does_not_apply_where_the_closest_encloser_has_no_wildcard(example):
    # RFC 4592: closest encloser of x.deep is the ENT deep.example.test, which has no *.
    assert ask(example, "x.deep.example.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(example, "wild.example.test").rcode() == dns.rcode.NOERROR  # ENT above the wildcard


def test_referral_below_a_cut(example):
    for name in ("lab.example.test", "host.lab.example.test", "a.b.lab.example.test"):
        r = ask(example, name)
        assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.AA and not r.answer
        assert [(rr.name.to_text(), rr.rdtype) for rr in r.authority] == [("lab.example.test.", dns.rdatatype.NS)]
        assert [(rr.name.to_text(), rd.to_text()) for rr in r.additional for rd in rr] == [
            ("ns1.lab.example.test.", "127.0.0.5")]


def test_glue_is_not_an_authoritative_answer(example):
    r = ask(example, "ns1.lab.example.test")
    assert not r.flags & dns.flags.AA and r.authority[0].rdtype == dns.rdatatype.NS


def test_ds_at_the_cut_is_answered_by_the_parent(example):
    r = ask(example, "lab.example.test", "DS")
    assert r.flags & dns.flags.AA and r.authority[0].rdtype == dns.rdatatype.SOA


def test_chain_of_referrals_through_the_demo_hierarchy():
    root = Responder(demo_zones("."))
    r = ask(root, "www.example.test")
    assert r.authority[0].name == N("test.") and texts(r.additional) == ["127.0.0.3"]
    tld = Responder(demo_zones("test."))
    r = ask(tld, "www.example.test")
    assert r.authority[0].name == N("example.test.") and texts(r.additional) == ["127.0.0.4"]


def test_the_most_specific_zone_answers():
    everything = Responder(demo_zones(".", "test.", "example.test.", "lab.example.test."))
    r = ask(everything, "printer.lab.example.test")
    assert r.flags & dns.flags.AA and texts(r.answer) == ["127.0.0.31"]


def test_refused_outside_our_zones(example):
    r = ask(example, "www.example.org")
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA and not r.answer


def test_refused_for_other_classes(example):
    r = ask(example, "www.example.test", "A", rdclass="CH")
    assert r.rcode() == dns.rcode.REFUSED


def test_additional_addresses_for_mx_srv_ns(example):
    r = ask(example, "example.test", "MX")
    assert sorted((rr.name.to_text(), rd.to_text()) for rr in r.additional for rd in rr) == [
        ("mail.example.test.", "127.0.0.1"), ("mail.example.test.", "::1")]
    r = ask(example, "_imap._tcp.example.test", "SRV")
    assert texts(r.answer) == ["0 1 1143 mail.example.test."] and "127.0.0.1" in texts(r.additional)
    r = ask(example, "example.test", "NS")
    assert texts(r.additional) == ["127.0.0.4"]


def test_rotation_between_responses(example):
    orders = [tuple(rd.to_text() for rd in ask(example, "pool.example.test").answer[0]) for _ in range(8)]
    assert orders[0] == ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14")
    assert orders[1] == ("127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.11")
    assert len(set(orders)) == 4 and orders[4] == orders[0]


def test_rotation_survives_case_and_edns_variants(example):
    firsts = []
    for name, kwargs in [("pool.example.test", {}), ("POOL.example.test", {}), ("pool.example.test", {"use_edns": 0}),
                         ("Pool.Example.Test", {})]:
        firsts.append(ask(example, name, **kwargs).answer[0][0].to_text())
    assert firsts[:2] == ["127.0.0.11", "127.0.0.12"]  # the second form continues the rotation


def test_question_case_is_kept(example):
    r = ask(example, "WwW.ExAmPlE.tEsT")
    assert r.question[0].name.to_text() == "WwW.ExAmPlE.tEsT."
    r2 = ask(example, "www.example.test")  # a prepared reply, spliced
    assert r2.question[0].name.to_text() == "www.example.test."
    assert texts(r2.answer) == ["127.0.0.1"]


def test_rd_is_copied_and_ra_never_set(example):
    r = ask(example, "www.example.test")
    assert r.flags & dns.flags.RD and not r.flags & dns.flags.RA
    q = dns.message.make_query("www.example.test", "A")
    q.flags &= ~dns.flags.RD
    r = dns.message.from_wire(example.handle(q.to_wire(), PEER, False))
    assert not r.flags & dns.flags.RD and r.flags & dns.flags.AA


def test_edns_reply_has_opt_and_our_payload(example):
    r = ask(example, "www.example.test", use_edns=0, payload=4096)
    assert r.edns == 0 and r.payload == 1232
    assert ask(example, "www.example.test").edns == -1  # no OPT without one in the query


def test_do_bit_copied(example):
    r = ask(example, "www.example.test", use_edns=0, want_dnssec=True)
    assert r.ednsflags & dns.flags.DO


def test_badvers(example):
    r = ask(example, "www.example.test", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0


def test_edns_options_are_ignored_not_refused(example):
    import dns.edns
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"12345678")
    r = ask(example, "www.example.test", use_edns=0, options=[cookie])
    assert r.rcode() == dns.rcode.NOERROR and texts(r.answer) == ["127.0.0.1"]


def _big_zone(tmp_path):
    path = tmp_path / "big"
    records = "".join(f'big TXT "{"x" * 200} {i}"\n' for i in range(20))
    path.write_text("$TTL 60\n@ SOA ns h 1 2 3 4 5\n NS ns\nns A 127.0.0.1\n" + records)
    return Responder({N("big.test."): load_zone("big.test.", path)})


def test_truncation_over_udp_and_full_answer_over_tcp(tmp_path):
    responder = _big_zone(tmp_path)
    r = ask(responder, "big.big.test", "TXT")  # no EDNS: 512 bytes
    assert r.flags & dns.flags.TC
    query = dns.message.make_query("big.big.test", "TXT", use_edns=0, payload=1232)
    wire = responder.handle(query.to_wire(), PEER, False)
    assert len(wire) <= 1232 and dns.message.from_wire(wire).flags & dns.flags.TC
    r = ask(responder, "big.big.test", "TXT", tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 20


def test_client_payload_is_honoured(tmp_path):
    responder = _big_zone(tmp_path)
    query = dns.message.make_query("big.big.test", "TXT", use_edns=0, payload=8192)
    responder.max_udp_payload = 8192
    responder.set_zones(responder.zones)
    wire = responder.handle(query.to_wire(), PEER, False)
    assert len(wire) > 1232 and not dns.message.from_wire(wire).flags & dns.flags.TC


def test_formerr_for_two_questions(example):
    q = dns.message.make_query("www.example.test", "A")
    q.question.append(dns.message.make_query("mail.example.test", "A").question[0])
    r = dns.message.from_wire(example.handle(q.to_wire(), PEER, False))
    assert r.rcode() == dns.rcode.FORMERR


def test_formerr_for_garbage_after_a_header(example):
    wire = bytes.fromhex("beef01000001000000000000") + b"\x05ab"
    r = dns.message.from_wire(example.handle(wire, PEER, False), question_only=True)
    assert r.id == 0xBEEF and r.rcode() == dns.rcode.FORMERR


def test_short_and_response_messages_are_dropped(example):
    assert example.handle(b"\x00\x01\x02", PEER, False) is None
    response = dns.message.make_response(dns.message.make_query("www.example.test", "A"))
    assert example.handle(response.to_wire(), PEER, False) is None


def test_notimp_for_other_opcodes(example):
    for opcode in (dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.UPDATE, dns.opcode.NOTIFY):
        q = dns.message.make_query("example.test", "SOA")
        q.set_opcode(opcode)
        r = dns.message.from_wire(example.handle(q.to_wire(), PEER, False))
        assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == opcode


def test_zone_change_drops_prepared_replies(example, tmp_path):
    assert texts(ask(example, "www.example.test").answer) == ["127.0.0.1"]
    path = tmp_path / "z"
    path.write_text((DEMO / "example.test.zone").read_text().replace(
        "www     IN A    127.0.0.1", "www     IN A    127.0.0.99").replace("$INCLUDE", "; "))
    example.set_zones({N("example.test."): load_zone("example.test.", path)})
    assert texts(ask(example, "www.example.test").answer) == ["127.0.0.99"]


def test_axfr_over_tcp_to_allowed_peer(example):
    q = dns.message.make_query("example.test", "AXFR")
    messages = example.handle(q.to_wire(), PEER, True)
    records = [rr for m in messages for rr in dns.message.from_wire(m, one_rr_per_rrset=True).answer]
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    names = {rr.name.to_text() for rr in records}
    assert {"www.example.test.", "*.wild.example.test.", "ns1.lab.example.test.",
            "_imap._tcp.example.test."} <= names
    assert all(dns.message.from_wire(m).flags & dns.flags.AA for m in messages)


def test_axfr_refused_to_others_and_over_udp(example):
    q = dns.message.make_query("example.test", "AXFR")
    r = dns.message.from_wire(example.handle(q.to_wire(), ("10.1.2.3", 1), True))
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    r = dns.message.from_wire(example.handle(q.to_wire(), PEER, False))
    assert r.rcode() == dns.rcode.FORMERR
    q = dns.message.make_query("www.example.test", "AXFR")  # not a zone apex
    assert dns.message.from_wire(example.handle(q.to_wire(), PEER, True)).rcode() == dns.rcode.NOTAUTH


def test_axfr_without_acl_is_refused():
    responder = Responder(demo_zones("example.test."))
    q = dns.message.make_query("example.test", "AXFR")
    assert dns.message.from_wire(responder.handle(q.to_wire(), PEER, True)).rcode() == dns.rcode.REFUSED


def test_large_axfr_is_split_into_several_messages(tmp_path):
    path = tmp_path / "many"
    path.write_text("$TTL 60\n@ SOA ns h 1 2 3 4 5\n NS ns\nns A 127.0.0.1\n"
                    + "".join(f"h{i} A 10.0.{i // 256}.{i % 256}\n" for i in range(1000)))
    responder = Responder({N("many.test."): load_zone("many.test.", path)},
                          transfer_acl={N("many.test."): [ipaddress.ip_network("127.0.0.1/32")]})
    messages = responder.handle(dns.message.make_query("many.test", "AXFR").to_wire(), PEER, True)
    assert len(messages) > 1
    assert sum(len(rr) for m in messages for rr in dns.message.from_wire(m).answer) == 1004


def test_ixfr_over_udp_answers_our_soa(example):
    q = dns.message.make_query("example.test", "IXFR")
    r = dns.message.from_wire(example.handle(q.to_wire(), PEER, False))
    assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.SOA]


def test_without_prepared_replies():
    responder = Responder(demo_zones("example.test."), max_prepared=0)
    for _ in range(3):
        assert texts(ask(responder, "www.example.test").answer) == ["127.0.0.1"]
    firsts = [ask(responder, "pool.example.test").answer[0][0].to_text() for _ in range(4)]
    assert len(set(firsts)) > 1  # still rotating


def test_query_logging_hook():
    seen = []
    responder = Responder(demo_zones("example.test."), log_query=lambda *a: seen.append(a))
    ask(responder, "www.example.test")
    ask(responder, "www.example.test")
    assert len(seen) == 2 and seen[1][2] == PEER


def test_ds_for_a_child_apex_comes_from_the_parent_when_both_are_served():
    both = Responder(demo_zones("example.test.", "lab.example.test."))
    r = ask(both, "lab.example.test", "DS")
    assert r.rcode() == dns.rcode.NOERROR and r.authority[0].name == N("example.test.")
    r = ask(both, "lab.example.test", "NS")  # everything else from the child
    assert r.flags & dns.flags.AA and r.answer[0].name == N("lab.example.test.")
