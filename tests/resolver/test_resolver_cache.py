"""The resolver cache with an injected task.Clock."""

from __future__ import annotations

import dns.name
import dns.rdatatype
import dns.rrset
from twisted.internet.task import Clock

from twisted_netapps.resolver.cache import RANK_ANSWER, RANK_GLUE, RANK_REFERRAL, LRU, ResolverCache
from twisted_netapps.resolver.prepared import prepare_answer

N = dns.name.from_text
A = dns.rdatatype.A


def rrset(name, ttl, rdtype, *values):
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *values)


def make(**kwargs):
    clock = Clock()
    return clock, ResolverCache(clock.seconds, **kwargs)


def test_positive_entries_count_down_and_expire():
    clock, cache = make()
    cache.put_rrset(rrset("www.example.test.", 300, "A", "192.0.2.1"), RANK_ANSWER)
    clock.advance(100.5)
    assert cache.get_rrset(N("www.example.test."), A).ttl == 199
    clock.advance(200)
    assert cache.get_rrset(N("www.example.test."), A) is None


def test_ttl_clamps():
    clock, cache = make(min_ttl=60, max_ttl=3600)
    cache.put_rrset(rrset("a.test.", 5, "A", "192.0.2.1"), RANK_ANSWER)
    cache.put_rrset(rrset("b.test.", 999999, "A", "192.0.2.2"), RANK_ANSWER)
    assert cache.get_rrset(N("a.test."), A).ttl == 60
    assert cache.get_rrset(N("b.test."), A).ttl == 3600


def test_zero_ttl_is_not_cached():
    clock, cache = make()
    cache.put_rrset(rrset("a.test.", 0, "A", "192.0.2.1"), RANK_ANSWER)
    assert cache.get_rrset(N("a.test."), A) is None


def test_negative_entries_rfc2308():
    clock, cache = make(negative_max_ttl=900)
    soa = rrset("example.test.", 3600, "SOA", "ns1.example.test. h.example.test. 1 2 3 4 300")
    cache.put_negative(N("nx.example.test."), None, soa)
    cache.put_negative(N("www.example.test."), dns.rdatatype.AAAA, soa)
    nx, got = cache.get_negative(N("nx.example.test."), dns.rdatatype.MX)
    assert nx is True and got.ttl == 300  # min(SOA TTL, minimum)
    nodata, got = cache.get_negative(N("www.example.test."), dns.rdatatype.AAAA)
    assert nodata is False
    assert cache.get_negative(N("www.example.test."), A) is None
    clock.advance(301)
    assert cache.get_negative(N("nx.example.test."), A) is None
    # the negative cap applies
    cache.put_negative(N("nx2.example.test."), None, rrset("example.test.", 86400, "SOA", "a. b. 1 2 3 4 86400"))
    assert cache.get_negative(N("nx2.example.test."), A)[1].ttl == 900


def test_authoritative_data_overrides_a_negative_entry():
    clock, cache = make()
    soa = rrset("example.test.", 3600, "SOA", "ns1.example.test. h.example.test. 1 2 3 4 300")
    cache.put_negative(N("new.example.test."), None, soa)
    cache.put_rrset(rrset("new.example.test.", 300, "A", "192.0.2.9"), RANK_ANSWER)
    assert cache.get_negative(N("new.example.test."), A) is None


def test_rank_glue_does_not_replace_answer_data():
    clock, cache = make()
    cache.put_rrset(rrset("ns1.example.test.", 300, "A", "192.0.2.1"), RANK_ANSWER)
    cache.put_rrset(rrset("ns1.example.test.", 300, "A", "6.6.6.6"), RANK_GLUE)
    assert [r.address for r in cache.get_rrset(N("ns1.example.test."), A)] == ["192.0.2.1"]
    # glue is usable for iteration but not served as an answer
    cache.put_rrset(rrset("ns2.example.test.", 300, "A", "192.0.2.2"), RANK_GLUE)
    assert cache.get_rrset(N("ns2.example.test."), A, RANK_ANSWER) is None
    assert cache.addresses(N("ns2.example.test."), ipv6=False) == ["192.0.2.2"]


def test_closest_delegation():
    clock, cache = make()
    cache.put_rrset(rrset("test.", 3600, "NS", "ns1.test."), RANK_REFERRAL)
    cache.put_rrset(rrset("example.test.", 600, "NS", "ns1.example.test."), RANK_REFERRAL)
    assert cache.closest_delegation(N("a.b.example.test.")).name == N("example.test.")
    assert cache.closest_delegation(N("other.test.")).name == N("test.")
    assert cache.closest_delegation(N("org.")) is None
    clock.advance(601)
    assert cache.closest_delegation(N("a.b.example.test.")).name == N("test.")


def test_lru_eviction_bounds_entries():
    clock, cache = make(max_entries=3)
    for i in range(3):
        cache.put_rrset(rrset(f"h{i}.test.", 300, "A", "192.0.2.1"), RANK_ANSWER)
    assert cache.get_rrset(N("h0.test."), A) is not None  # h0 is now the most recently used
    cache.put_rrset(rrset("h3.test.", 300, "A", "192.0.2.1"), RANK_ANSWER)
    assert cache.get_rrset(N("h1.test."), A) is None  # the least recently used went
    assert cache.get_rrset(N("h0.test."), A) is not None
    assert cache.sizes()["rrsets"] == 3


def test_lru_class():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.get("a")
    lru.put("c", 3)
    assert lru.peek("b") is None and lru.peek("a") == 1 and lru.evictions == 1


def test_prepared_answers_expire_with_their_smallest_ttl():
    clock, cache = make()
    answer = prepare_answer(
        N("www.example.test."), A, 1, 0,
        [rrset("alias.example.test.", 30, "CNAME", "www.example.test."), rrset("www.example.test.", 300, "A", "192.0.2.1")],
        [], clock.seconds(),
    )
    cache.put_answer(b"key", answer)
    clock.advance(29)
    assert cache.get_answer(b"key") is answer
    clock.advance(1)
    assert cache.get_answer(b"key") is None


def test_server_penalty_backs_off_and_recovers():
    clock, cache = make()
    assert cache.server_penalty("192.0.2.53") == 0
    cache.server_failed("192.0.2.53")
    assert cache.server_penalty("192.0.2.53") == 1
    clock.advance(6)
    assert cache.server_penalty("192.0.2.53") == 0
    cache.server_failed("192.0.2.53")
    cache.server_answered("192.0.2.53")
    assert cache.server_penalty("192.0.2.53") == 0
