"""The sans-I/O iterative core against scripted upstream servers."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from twisted.internet.task import Clock

from fake_upstream import TIMEOUT, ZoneServer, drive
from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.hints import parse_hints
from twisted_netapps.resolver.iterate import Limits, Resolution

ROOT, TLD, EXAMPLE, EXAMPLE2, OTHER, LAME, LOOPY = (
    "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7",
)

HINTS = parse_hints(f". 3600000 NS a.root.\na.root. 3600000 A {ROOT}\n")

ROOT_ZONE = f"""
. 86400 SOA a.root. hostmaster.root. 1 1800 900 604800 3600
. 86400 NS a.root.
a.root. 86400 A {ROOT}
test. 172800 NS ns1.test.
ns1.test. 172800 A {TLD}
"""

TEST_ZONE = f"""
test. 86400 SOA ns1.test. hostmaster.test. 1 1800 900 604800 900
test. 86400 NS ns1.test.
ns1.test. 86400 A {TLD}
example.test. 86400 NS ns1.example.test.
example.test. 86400 NS ns2.example.test.
ns1.example.test. 86400 A {EXAMPLE}
ns2.example.test. 86400 A {EXAMPLE2}
other.test. 86400 NS ns.elsewhere.example.test.
lame.test. 86400 NS ns.lame.test.
ns.lame.test. 86400 A {LAME}
loopa.test. 86400 NS ns.loopb.test.
loopb.test. 86400 NS ns.loopa.test.
"""

EXAMPLE_ZONE = f"""
example.test. 300 SOA ns1.example.test. hostmaster.example.test. 1 1800 900 604800 60
example.test. 300 NS ns1.example.test.
example.test. 300 NS ns2.example.test.
ns1.example.test. 300 A {EXAMPLE}
ns2.example.test. 300 A {EXAMPLE2}
ns.elsewhere.example.test. 300 A {OTHER}
www.example.test. 600 A 192.0.2.80
mail.example.test. 300 A 192.0.2.25
alias.example.test. 300 CNAME www.example.test.
ext.example.test. 300 CNAME www.other.test.
loop1.example.test. 300 CNAME loop2.example.test.
loop2.example.test. 300 CNAME loop1.example.test.
""" + "".join(
    f"c{i}.example.test. 300 CNAME c{i + 1}.example.test.\n" for i in range(12)
) + "c12.example.test. 300 A 192.0.2.12\n" + "".join(
    f'big.example.test. 300 TXT "record {i:03d} of a set too big for one UDP answer of 1232 bytes"\n' for i in range(40)
)

OTHER_ZONE = """
other.test. 300 SOA ns.elsewhere.example.test. hostmaster.other.test. 1 1800 900 604800 120
other.test. 300 NS ns.elsewhere.example.test.
www.other.test. 300 A 192.0.2.81
"""


def servers():
    example = ZoneServer("example.test.", EXAMPLE_ZONE)
    return {
        ROOT: ZoneServer(".", ROOT_ZONE),
        TLD: ZoneServer("test.", TEST_ZONE),
        EXAMPLE: example,
        EXAMPLE2: example,
        OTHER: ZoneServer("other.test.", OTHER_ZONE),
    }


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_000_000)
    return c


@pytest.fixture
def cache(clock):
    return ResolverCache(clock.seconds)


def resolve(name, rdtype, cache, clock, network=None, **kwargs):
    limits = kwargs.pop("limits", Limits())
    rng = kwargs.pop("rng", random.Random(7))
    resolution = Resolution(
        dns.name.from_text(name), dns.rdatatype.from_text(rdtype), cache=cache, hints=HINTS,
        clock=clock.seconds, limits=limits, rng=rng, **kwargs,
    )
    run = drive(resolution, servers() if network is None else network, clock)
    run.resolution = resolution
    return run


def texts(result):
    return sorted(f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in result.answer for rd in r)


def test_follows_referrals_from_the_root(cache, clock):
    run = resolve("www.example.test.", "A", cache, clock)
    assert run.result.rcode == dns.rcode.NOERROR
    assert texts(run.result) == ["www.example.test. A 192.0.2.80"]
    assert run.servers[:2] == [ROOT, TLD] and run.servers[2] in (EXAMPLE, EXAMPLE2)
    assert all(not e.over_tcp and e.edns for e in run.exchanges)
    outcomes = [s.outcome for s in run.resolution.steps]
    assert outcomes == ["referral", "referral", "answer"]


def test_second_lookup_comes_from_the_cache_with_ttl_counted_down(cache, clock):
    resolve("www.example.test.", "A", cache, clock)
    clock.advance(100)
    run = resolve("www.example.test.", "A", cache, clock)
    assert run.exchanges == []
    assert run.result.answer[0].ttl == 500


def test_referral_cache_starts_at_the_closest_zone_cut(cache, clock):
    resolve("www.example.test.", "A", cache, clock)
    run = resolve("mail.example.test.", "A", cache, clock)
    assert len(run.exchanges) == 1 and run.servers[0] in (EXAMPLE, EXAMPLE2)
    assert texts(run.result) == ["mail.example.test. A 192.0.2.25"]


def test_glueless_out_of_bailiwick_ns_is_resolved_by_a_sub_resolution(cache, clock):
    run = resolve("www.other.test.", "A", cache, clock)
    assert texts(run.result) == ["www.other.test. A 192.0.2.81"]
    asked = [(e.server, e.qname) for e in run.exchanges]
    assert (TLD, "ns.elsewhere.example.test.") in asked  # the sub-resolution walked the chain
    assert asked[-1] == (OTHER, "www.other.test.")
    assert max(s.depth for s in run.resolution.steps) == 1


def test_cname_chased_across_zones(cache, clock):
    run = resolve("ext.example.test.", "A", cache, clock)
    assert texts(run.result) == ["ext.example.test. CNAME www.other.test.", "www.other.test. A 192.0.2.81"]
    assert [r.rdtype for r in run.result.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]


def test_cname_inside_one_zone_in_one_answer(cache, clock):
    run = resolve("alias.example.test.", "A", cache, clock)
    assert texts(run.result) == ["alias.example.test. CNAME www.example.test.", "www.example.test. A 192.0.2.80"]


def test_nxdomain_with_soa_and_negative_cache(cache, clock):
    run = resolve("nope.example.test.", "A", cache, clock)
    assert run.result.rcode == dns.rcode.NXDOMAIN
    (soa,) = run.result.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name == dns.name.from_text("example.test.")
    assert soa.ttl == 60  # min(SOA TTL, SOA minimum)
    again = resolve("nope.example.test.", "AAAA", cache, clock)  # NXDOMAIN covers every type
    assert again.exchanges == [] and again.result.rcode == dns.rcode.NXDOMAIN
    clock.advance(61)
    assert resolve("nope.example.test.", "A", cache, clock).exchanges != []


def test_nodata_is_noerror_with_soa_not_servfail(cache, clock):
    run = resolve("www.example.test.", "AAAA", cache, clock)
    assert run.result.rcode == dns.rcode.NOERROR
    assert run.result.answer == []
    assert [r.rdtype for r in run.result.authority] == [dns.rdatatype.SOA]
    again = resolve("www.example.test.", "AAAA", cache, clock)
    assert again.exchanges == [] and again.result.rcode == dns.rcode.NOERROR and again.result.authority
    # NODATA for AAAA says nothing about A
    assert texts(resolve("www.example.test.", "A", cache, clock).result) == ["www.example.test. A 192.0.2.80"]


def test_truncated_answer_is_retried_over_tcp(cache, clock):
    run = resolve("big.example.test.", "TXT", cache, clock)
    assert len(run.result.answer[0]) == 40
    assert run.exchanges[-1].over_tcp and not run.exchanges[-2].over_tcp
    assert "truncated" in [s.outcome for s in run.resolution.steps]


class ByName(random.Random):
    """Server order by name: ns1 (the dead one below) always comes first."""

    def shuffle(self, x):
        x.sort(key=str)


def test_timeout_moves_on_to_the_other_name_server_and_remembers(cache, clock):
    network = servers()
    network[EXAMPLE] = TIMEOUT
    resolve("www.example.test.", "A", cache, clock)  # delegation cached, both NS known
    outcomes = []
    for name in ("mail.example.test.", "alias.example.test.", "ext.example.test."):
        run = resolve(name, "A", cache, clock, network, rng=ByName())
        assert run.result.rcode == dns.rcode.NOERROR
        outcomes += [(s.server, s.outcome) for s in run.resolution.steps]
    # the dead server was tried once, timed out, and was avoided afterwards
    assert outcomes.count((EXAMPLE, "timeout")) == 1
    assert (EXAMPLE2, "answer") in outcomes or (EXAMPLE2, "cname") in outcomes


def test_lame_server_refused_and_upward_referral_then_servfail(cache, clock):
    network = servers()

    def refusing(query, over_tcp):
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.REFUSED)
        return response

    network[LAME] = refusing
    run = resolve("www.lame.test.", "A", cache, clock, network)
    assert run.result.rcode == dns.rcode.SERVFAIL
    assert "REFUSED" in run.result.reason

    network[LAME] = ZoneServer(".", ROOT_ZONE)  # a server that answers with the root's referral
    run = resolve("host.lame.test.", "A", cache, clock, network)
    assert run.result.rcode == dns.rcode.SERVFAIL
    assert "lame" in [s.outcome for s in run.resolution.steps]
    assert len(run.exchanges) <= 3


def test_mutually_dependent_glueless_delegations_fail_bounded(cache, clock):
    run = resolve("www.loopa.test.", "A", cache, clock)
    assert run.result.rcode == dns.rcode.SERVFAIL
    assert len(run.exchanges) < 20


def test_cname_loop_and_overlong_chain_are_servfail(cache, clock):
    assert resolve("loop1.example.test.", "A", cache, clock).result.rcode == dns.rcode.SERVFAIL
    run = resolve("c0.example.test.", "A", cache, clock)
    assert run.result.rcode == dns.rcode.SERVFAIL
    assert "longer than 8" in run.result.reason
    ok = resolve("c4.example.test.", "A", cache, clock)  # 8 CNAMEs: allowed
    assert ok.result.rcode == dns.rcode.NOERROR and len(ok.result.answer) == 9


def test_poisoned_out_of_bailiwick_records_are_ignored(cache, clock):
    network = servers()
    honest = network[EXAMPLE]

    def poisoning(query, over_tcp):
        response = honest(query, over_tcp)
        response.answer.append(dns.rrset.from_text("www.victim.test.", 86400, "IN", "A", "6.6.6.6"))
        response.authority.append(dns.rrset.from_text("test.", 86400, "IN", "NS", "ns.evil.example."))
        response.additional.append(dns.rrset.from_text("ns1.test.", 86400, "IN", "A", "6.6.6.6"))
        return response

    network[EXAMPLE] = network[EXAMPLE2] = poisoning
    tld_honest = network[TLD]

    def poisoning_referral(query, over_tcp):
        response = tld_honest(query, over_tcp)
        # in test.'s bailiwick but not glue for the delegation's NS names
        response.additional.append(dns.rrset.from_text("www.example.test.", 86400, "IN", "A", "6.6.6.6"))
        return response

    network[TLD] = poisoning_referral
    run = resolve("www.example.test.", "A", cache, clock, network)
    assert texts(run.result) == ["www.example.test. A 192.0.2.80"]
    assert cache.get_rrset(dns.name.from_text("www.victim.test."), dns.rdatatype.A) is None
    assert [r.address for r in cache.get_rrset(dns.name.from_text("ns1.test."), dns.rdatatype.A)] == [TLD]
    assert [str(r.target) for r in cache.get_rrset(dns.name.from_text("test."), dns.rdatatype.NS)] == ["ns1.test."]
    victim = resolve("www.victim.test.", "A", cache, clock, network)
    assert victim.result.rcode == dns.rcode.NXDOMAIN


def test_replies_with_wrong_id_source_or_question_are_ignored(cache, clock):
    network = servers()
    root = network[ROOT]

    def spoofed_then_real(query, over_tcp):
        real = root(query, over_tcp)
        wrong_id = dns.message.from_wire(real.to_wire())
        wrong_id.id = (query.id + 1) % 65536
        wrong_id.answer.append(dns.rrset.from_text("www.example.test.", 86400, "IN", "A", "6.6.6.6"))
        wrong_question = dns.message.make_query("www.example.test.", "AAAA")
        wrong_question.id = query.id
        wrong_question.flags |= dns.flags.QR
        forged = dns.message.from_wire(real.to_wire())
        return [wrong_id, (forged.to_wire(), (ROOT, 5353)), (forged.to_wire(), ("10.9.9.9", 53)),
                wrong_question, real]

    network[ROOT] = spoofed_then_real
    run = resolve("www.example.test.", "A", cache, clock, network)
    assert texts(run.result) == ["www.example.test. A 192.0.2.80"]
    assert [s.outcome for s in run.resolution.steps][0] == "referral"


def test_query_ids_are_random(cache, clock):
    ids = set()
    for i in range(20):
        resolution = Resolution(dns.name.from_text(f"n{i}.example.test."), dns.rdatatype.A, cache=cache,
                                hints=HINTS, clock=clock.seconds)
        action = resolution.start()
        ids.add(dns.message.from_wire(action.wire).id)
    assert len(ids) > 15


def test_time_budget_exhausted_is_servfail(cache, clock):
    network = {}  # nothing answers
    start = clock.seconds()
    run = resolve("www.example.test.", "A", cache, clock, network, limits=Limits(time_budget=3.0, server_timeout=1.0))
    assert run.result.rcode == dns.rcode.SERVFAIL
    assert clock.seconds() - start <= 3.01


def test_edns_rejected_falls_back_to_plain_dns(cache, clock):
    network = servers()
    honest = network[ROOT]

    def old_server(query, over_tcp):
        if query.edns >= 0:
            response = dns.message.make_response(query)
            response.use_edns(False)
            response.set_rcode(dns.rcode.FORMERR)
            return response
        return honest(query, over_tcp)

    network[ROOT] = old_server
    run = resolve("www.example.test.", "A", cache, clock, network)
    assert run.result.rcode == dns.rcode.NOERROR
    assert [e.edns for e in run.exchanges[:2]] == [True, False]


def forwarder(rcode=None):
    full = servers()

    def handler(query, over_tcp):
        assert query.flags & dns.flags.RD
        if rcode is not None:
            response = dns.message.make_response(query)
            response.set_rcode(rcode)
            return response
        # a recursive forwarder: resolve with a fresh core and answer
        c = Clock()
        inner = Resolution(query.question[0].name, query.question[0].rdtype, cache=ResolverCache(c.seconds),
                           hints=HINTS, clock=c.seconds)
        result = drive(inner, full, c).result
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.set_rcode(result.rcode)
        response.answer, response.authority = result.answer, result.authority
        return response

    return handler


def test_forwarding_keeps_upstream_servfail_as_servfail(cache, clock):
    network = {"10.1.0.1": forwarder(dns.rcode.SERVFAIL)}
    run = resolve("www.example.test.", "A", cache, clock, network, forwarders=[("10.1.0.1", 53)])
    assert run.result.rcode == dns.rcode.SERVFAIL


def test_forwarding_tries_the_next_forwarder_and_keeps_nxdomain(cache, clock):
    network = {"10.1.0.1": forwarder(dns.rcode.SERVFAIL), "10.1.0.2": forwarder()}
    fwd = [("10.1.0.1", 53), ("10.1.0.2", 53)]
    run = resolve("ext.example.test.", "A", cache, clock, network, forwarders=fwd)
    assert texts(run.result) == ["ext.example.test. CNAME www.other.test.", "www.other.test. A 192.0.2.81"]
    run = resolve("nope.example.test.", "A", cache, clock, network, forwarders=fwd)
    assert run.result.rcode == dns.rcode.NXDOMAIN and run.result.authority


def test_answer_from_one_reply_keeps_its_section_for_serving(cache, clock):
    run = resolve("www.example.test.", "A", cache, clock)
    section = run.result.answer_wire
    assert section is not None
    decoded = dns.message.from_wire(
        b"\x00\x00\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00"
        + dns.name.from_text("www.example.test.").to_wire() + b"\x00\x01\x00\x01" + section
    )
    assert sorted(f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in decoded.answer for rd in r) == texts(run.result)


def test_answers_not_exactly_one_reply_section_are_encoded(cache, clock):
    # CNAME in one zone, target in another: two replies; a chain in one reply: encoded in chain order
    assert resolve("ext.example.test.", "A", cache, clock).result.answer_wire is None
    assert resolve("alias.example.test.", "A", ResolverCache(clock.seconds), clock).result.answer_wire is None
    # answered from the cache
    assert resolve("www.example.test.", "A", cache, clock).result.answer_wire is not None
    assert resolve("www.example.test.", "A", cache, clock).result.answer_wire is None
    # names in RDATA (MX), negative answers
    assert resolve("example.test.", "NS", cache, clock).result.answer_wire is None
    assert resolve("missing.example.test.", "A", cache, clock).result.answer_wire is None
    # TTLs clamped by the cache
    clamped = ResolverCache(clock.seconds, max_ttl=100)
    assert resolve("mail.example.test.", "A", clamped, clock).result.answer_wire is None
    # a poisoned answer section (an out-of-bailiwick record dropped from the answer)
    network = servers()
    honest = network[EXAMPLE]

    def poisoning(query, over_tcp):
        response = honest(query, over_tcp)
        response.answer.append(dns.rrset.from_text("www.victim.test.", 86400, "IN", "A", "6.6.6.6"))
        return response

    network[EXAMPLE] = network[EXAMPLE2] = poisoning
    run = resolve("mail.example.test.", "A", ResolverCache(clock.seconds), clock, network)
    assert texts(run.result) == ["mail.example.test. A 192.0.2.25"] and run.result.answer_wire is None
