"""The query handler: ACL, cache hits, coalescing, odd queries (no sockets)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset
from twisted.internet import defer
from twisted.internet.task import Clock

from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.handler import ClientACL, RecursiveQueryHandler
from twisted_netapps.resolver.hints import parse_hints
from twisted_netapps.resolver.iterate import Result
from twisted_netapps.stats import ServiceStats

HINTS = parse_hints(". 3600000 NS a.root.\na.root. 3600000 A 10.0.0.1\n")


class FakeRunner:
    """Stands in for the network: the test fires ``deferred`` with a Result."""

    def __init__(self, resolution, started):
        self.resolution = resolution
        self.deferred = defer.Deferred()
        started.append(self)

    def run(self):
        return self.deferred


def make_handler(allow=("127.0.0.0/8",), **kwargs):
    clock = Clock()
    clock.advance(5000)
    started = []
    stats = ServiceStats("resolver")
    handler = RecursiveQueryHandler(
        cache=ResolverCache(clock.seconds), hints=HINTS, reactor=clock, stats=stats,
        acl=ClientACL(list(allow)), runner_factory=lambda resolution: FakeRunner(resolution, started), **kwargs,
    )
    return handler, clock, started, stats


def query(name="www.example.test.", rdtype="A", **kwargs):
    message = dns.message.make_query(name, rdtype, **kwargs)
    return message, message.to_wire()


def answer_result(resolution, ttl=300):
    rrset = dns.rrset.from_text(resolution.qname, ttl, "IN", "A", "192.0.2.80")
    return Result(resolution.qname, resolution.qtype, dns.rcode.NOERROR, [rrset], [])


def fired(d):
    results = []
    d.addBoth(results.append)
    assert results, "deferred did not fire"
    return results[0]


def test_identical_questions_are_coalesced_into_one_resolution():
    handler, clock, started, stats = make_handler()
    (m1, w1), (m2, w2) = query(), query("WWW.example.test.")
    d1 = handler.handle(w1, ("127.0.0.1", 1000), False)
    d2 = handler.handle(w2, ("127.0.0.1", 1001), False)
    assert len(started) == 1 and stats["coalesced"] == 1
    started[0].deferred.callback(answer_result(started[0].resolution))
    r1, r2 = dns.message.from_wire(fired(d1)), dns.message.from_wire(fired(d2))
    assert (r1.id, r2.id) == (m1.id, m2.id)
    assert r2.question[0].name.to_text() == "WWW.example.test."
    assert r1.answer[0][0].address == "192.0.2.80" and r1.flags & dns.flags.RA


def test_cache_hit_needs_no_resolution_and_counts_ttl_down():
    handler, clock, started, stats = make_handler()
    d = handler.handle(query()[1], ("127.0.0.1", 1000), False)
    started[0].deferred.callback(answer_result(started[0].resolution))
    fired(d)
    clock.advance(7)
    reply = handler.handle(query()[1], ("127.0.0.1", 1000), False)
    assert isinstance(reply, bytes) and len(started) == 1 and stats["cache_hits"] == 1
    assert dns.message.from_wire(reply).answer[0].ttl == 293


def test_clients_outside_the_allowed_networks_are_refused():
    handler, clock, started, stats = make_handler(allow=["10.0.0.0/8"])
    reply = dns.message.from_wire(handler.handle(query()[1], ("127.0.0.1", 1000), False))
    assert reply.rcode() == dns.rcode.REFUSED and not reply.flags & dns.flags.RA
    assert started == []
    assert ClientACL(["127.0.0.0/8", "::1/128"]).allows("::ffff:127.0.0.1")
    assert not ClientACL(["127.0.0.0/8"]).allows("not an address")


def test_non_recursive_miss_is_refused_hit_is_answered():
    handler, clock, started, stats = make_handler()
    message, data = query()
    message.flags &= ~dns.flags.RD
    reply = dns.message.from_wire(handler.handle(message.to_wire(), ("127.0.0.1", 1), False))
    assert reply.rcode() == dns.rcode.REFUSED and started == []
    d = handler.handle(data, ("127.0.0.1", 1), False)
    started[0].deferred.callback(answer_result(started[0].resolution))
    fired(d)
    reply = dns.message.from_wire(handler.handle(message.to_wire(), ("127.0.0.1", 1), False))
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer and not reply.flags & dns.flags.RD


def test_servfail_result_and_crashes_become_servfail():
    handler, clock, started, stats = make_handler()
    d = handler.handle(query("a.test.")[1], ("127.0.0.1", 1), False)
    started[0].deferred.errback(RuntimeError("core bug"))
    assert dns.message.from_wire(fired(d)).rcode() == dns.rcode.SERVFAIL
    d = handler.handle(query("b.test.")[1], ("127.0.0.1", 1), False)
    r = started[1].resolution
    started[1].deferred.callback(Result(r.qname, r.qtype, dns.rcode.SERVFAIL, [], [], "broken chain"))
    assert dns.message.from_wire(fired(d)).rcode() == dns.rcode.SERVFAIL


def test_malformed_and_unsupported_queries():
    handler, clock, started, stats = make_handler()
    peer = ("127.0.0.1", 1)
    assert handler.handle(b"\x12\x34\x01", peer, False) is None  # shorter than a header: dropped
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab"
    reply = dns.message.from_wire(handler.handle(garbage, peer, False))
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("example.test.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(handler.handle(notify.to_wire(), peer, False)).rcode() == dns.rcode.NOTIMP
    axfr = dns.message.from_wire(handler.handle(query("example.test.", "AXFR")[1], peer, True))
    assert axfr.rcode() == dns.rcode.REFUSED
    response = dns.message.make_response(dns.message.make_query("a.test.", "A"))
    assert handler.handle(response.to_wire(), peer, False) is None  # never answer answers
    edns1 = dns.message.make_query("a.test.", "A", use_edns=1)
    assert dns.message.from_wire(handler.handle(edns1.to_wire(), peer, False)).rcode() == dns.rcode.BADVERS
    assert started == []


def test_oversized_udp_answer_sets_tc_but_tcp_gets_it_all():
    handler, clock, started, stats = make_handler()
    d = handler.handle(query("big.test.", "TXT")[1], ("127.0.0.1", 1), False)
    r = started[0].resolution
    rrset = dns.rrset.from_text(r.qname, 300, "IN", "TXT", *[f'"{"y" * 100} {i}"' for i in range(30)])
    started[0].deferred.callback(Result(r.qname, r.qtype, dns.rcode.NOERROR, [rrset], []))
    udp = dns.message.from_wire(fired(d))
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = dns.message.from_wire(handler.handle(query("big.test.", "TXT")[1], ("127.0.0.1", 1), True))
    assert len(tcp.answer[0]) == 30


def test_too_many_resolutions_at_once_fail_fast():
    handler, clock, started, stats = make_handler(max_resolutions=2)
    peer = ("127.0.0.1", 1)
    handler.handle(query("a.test.")[1], peer, False)
    handler.handle(query("b.test.")[1], peer, False)
    joined = handler.handle(query("a.test.")[1], peer, False)  # same question: joins, no new resolution
    assert not isinstance(joined, bytes)
    reply = handler.handle(query("c.test.")[1], peer, False)
    assert dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
    assert len(started) == 2 and stats["overload_servfail"] == 1


def test_answer_section_from_upstream_is_served_and_cached_as_received():
    handler, clock, started, stats = make_handler()
    d = handler.handle(query()[1], ("127.0.0.1", 1000), False)
    resolution = started[0].resolution
    upstream = dns.message.make_response(dns.message.make_query("www.example.test.", "A"))
    upstream.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.80", "192.0.2.81"))
    upstream_wire = upstream.to_wire()
    section = upstream_wire[12 + len(resolution.qname.to_wire()) + 4:]
    rrsets = dns.message.from_wire(upstream_wire).answer
    started[0].deferred.callback(Result(resolution.qname, 1, dns.rcode.NOERROR, rrsets, [], answer_wire=section))
    reply = fired(d)
    assert reply.endswith(section)  # the client sent no OPT: the section ends the reply
    served = dns.message.from_wire(reply)
    assert sorted(rd.address for rd in served.answer[0]) == ["192.0.2.80", "192.0.2.81"]
    clock.advance(10)
    hit = dns.message.from_wire(handler.handle(query()[1], ("127.0.0.1", 1000), False))
    assert hit.answer[0].ttl == 290 and len(hit.answer[0]) == 2


def test_an_answer_section_that_disagrees_with_the_records_is_not_served():
    handler, clock, started, stats = make_handler()
    d = handler.handle(query()[1], ("127.0.0.1", 1000), False)
    resolution = started[0].resolution
    other = dns.message.make_response(dns.message.make_query("www.example.test.", "A"))
    other.answer.append(dns.rrset.from_text("www.example.test.", 999, "IN", "A", "6.6.6.6"))
    section = other.to_wire()[12 + len(resolution.qname.to_wire()) + 4:]
    result = answer_result(resolution)
    started[0].deferred.callback(Result(result.qname, result.qtype, result.rcode, result.answer, [], answer_wire=section))
    served = dns.message.from_wire(fired(d))
    assert [rd.address for rd in served.answer[0]] == ["192.0.2.80"] and served.answer[0].ttl == 300
