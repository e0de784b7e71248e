"""MX lookups on the reactor against a scripted DNS server on a loopback UDP socket."""

from __future__ import annotations

import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import pytest_twisted
from twisted.internet import protocol, reactor

from twisted_netapps.mail.smtp.mx import MXLookupError, MXResolver

DROP = "drop"  # the server reads the query and never answers
NXDOMAIN = "nxdomain"

RECORDS = {
    ("y.test.", "MX"): ["20 b.y.test.", "10 a.y.test.", "30 c.y.test."],
    ("a.y.test.", "A"): ["127.0.0.6"],
    ("b.y.test.", "A"): ["127.0.0.7"],
    ("b.y.test.", "AAAA"): ["::1"],
    ("c.y.test.", "A"): NXDOMAIN,
    ("c.y.test.", "AAAA"): NXDOMAIN,
    ("plain.test.", "A"): ["127.0.0.8"],
    ("gone.test.", "MX"): NXDOMAIN,
    ("null.test.", "MX"): ["0 ."],
    ("slow.test.", "MX"): DROP,
    ("half.test.", "MX"): ["10 mx.half.test."],
    ("mx.half.test.", "A"): ["127.0.0.9"],
    ("mx.half.test.", "AAAA"): DROP,  # one family silent: the other still counts
}


class ScriptedDNS(protocol.DatagramProtocol):
    def __init__(self, records):
        self.records = records
        self.queries = []
        self.threads = set()

    def datagramReceived(self, data, addr):
        query = dns.message.from_wire(data)
        question = query.question[0]
        key = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
        self.queries.append(key)
        self.threads.add(threading.current_thread().name)
        value = self.records.get(key)
        if value == DROP:
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if value == NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif value:
            response.answer.append(dns.rrset.from_text(key[0], 300, "IN", key[1], *value))
        self.transport.write(response.to_wire(), addr)


@pytest.fixture
def scripted():
    server = ScriptedDNS(RECORDS)
    port = reactor.listenUDP(0, server, interface="127.0.0.1")
    yield server, ("127.0.0.1", port.getHost().port)
    port.stopListening()


def resolver(address, timeout=5.0):
    return MXResolver(reactor, [address], timeout=timeout, server_timeout=0.3)


@pytest_twisted.ensureDeferred
async def test_mx_order_and_fallbacks(scripted):
    server, address = scripted
    mx = resolver(address)
    hosts = await mx.lookup_hosts("y.test")
    assert [(h.name, h.addresses) for h in hosts] == [("a.y.test", ("127.0.0.6",)), ("b.y.test", ("127.0.0.7", "::1"))]
    assert (await mx.lookup_hosts("plain.test"))[0].addresses == ("127.0.0.8",)  # implicit MX
    assert (await mx.lookup_hosts("[127.0.0.9]"))[0].addresses == ("127.0.0.9",)
    for domain, permanent in (("gone.test", True), ("null.test", True), ("slow.test", False)):
        with pytest.raises(MXLookupError) as e:
            await mx.lookup_hosts(domain)
        assert e.value.permanent is permanent
    assert server.threads == {threading.main_thread().name}


@pytest_twisted.ensureDeferred
async def test_a_silent_family_does_not_lose_the_other(scripted):
    _, address = scripted
    hosts = await resolver(address, timeout=2.0).lookup_hosts("half.test")
    assert [(h.name, h.addresses) for h in hosts] == [("mx.half.test", ("127.0.0.9",))]


@pytest_twisted.ensureDeferred
async def test_a_dead_server_costs_the_deadline_and_no_thread(scripted):
    server, address = scripted
    pool = reactor.getThreadPool()
    busy_before = len(pool.working)
    started = reactor.seconds()
    lookups = [resolver(address, timeout=0.5).lookup_hosts("slow.test") for _ in range(20)]
    assert len(pool.working) == busy_before  # nothing waits in Twisted's thread pool
    for lookup in lookups:
        with pytest.raises(MXLookupError) as e:
            await lookup
        assert not e.value.permanent
    assert 0.45 < reactor.seconds() - started < 2.0  # the lookup deadline (0.5 s), all at once
    assert server.queries.count(("slow.test.", "MX")) == 40  # each lookup asked twice, then gave up


@pytest_twisted.ensureDeferred
async def test_no_server_configured_is_a_temporary_failure():
    with pytest.raises(MXLookupError) as e:
        await MXResolver(reactor, [], timeout=1.0).lookup_hosts("y.test")
    assert not e.value.permanent and "no DNS server" in str(e.value)
