"""The status page's share of DNS queries: every query is an event until the second's
share is used up, then the responder takes its plain path until the next second."""

from __future__ import annotations

import dns.message
from twisted.internet import task

from twisted_netapps.dns.responder import Responder
from twisted_netapps.dns.service import QuerySampler
from twisted_netapps.observe import Recent

PEER = ("127.0.0.1", 40000)


def test_queries_are_events_until_the_share_is_used_then_cost_nothing_until_the_next_second():
    clock = task.Clock()
    clock.advance(100.25)
    recent = Recent("dns", clock=clock.seconds, per_second=3)
    responder = Responder()
    QuerySampler(responder, recent, clock)
    query = dns.message.make_query("www.example.test", "A").to_wire()
    for _ in range(4):
        responder.handle(query, PEER, False)
    assert len(recent.events) == 3  # the share; the 4th query switched the hook off
    assert "handle" not in responder.__dict__  # the plain path: no hook, no check
    responder.handle(query, PEER, False)
    assert len(recent.events) == 3 and len(clock.getDelayedCalls()) == 1
    clock.advance(0.75)  # the next second starts
    assert responder.__dict__["handle"] == responder._handle_logged
    responder.handle(query, PEER, True)
    assert len(recent.events) == 4 and recent.events[-1]["transport"] == "tcp"
    assert not clock.getDelayedCalls()


def test_a_quiet_server_shows_every_query():
    clock = task.Clock()
    recent = Recent("dns", clock=clock.seconds, per_second=100)
    responder = Responder()
    QuerySampler(responder, recent, clock)
    query = dns.message.make_query("example.test", "MX").to_wire()
    for second in range(5):
        responder.handle(query, PEER, False)
        clock.advance(1)
    assert len(recent.events) == 5 and not clock.getDelayedCalls()
