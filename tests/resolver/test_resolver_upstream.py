"""The Twisted driver over real loopback sockets, against scripted servers."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFDSet, IReactorTCP, IReactorTime, IReactorUDP
from twisted.protocols.basic import Int16StringReceiver
from zope.interface import implementer

from fake_upstream import ZoneServer
from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.hints import parse_hints
from twisted_netapps.resolver.iterate import Limits, Resolution
from twisted_netapps.resolver.upstream import ResolutionRunner, _PortExchange, _UDPExchange, udp_exchange_for

ZONE = "\n".join(
    [". 300 SOA a.root. h.root. 1 2 3 4 60", ". 300 NS a.root.", "a.root. 300 A 127.0.0.1",
     "www.example. 300 A 192.0.2.1"]
    + [f'big.example. 300 TXT "{"z" * 100} {i}"' for i in range(30)]
)


class FakeUDPServer(protocol.DatagramProtocol):
    def __init__(self, zone: ZoneServer):
        self.zone = zone
        self.sources = []
        self.ids = []

    def datagramReceived(self, data, addr):
        query = dns.message.from_wire(data)
        self.sources.append(addr[1])
        self.ids.append(query.id)
        response = self.zone(query, False)
        wire = response.to_wire(max_size=65535)
        if len(wire) > 512 and query.payload < len(wire):
            response.flags |= dns.flags.TC
            response.answer = []
            wire = response.to_wire()
        self.transport.write(wire, addr)


class FakeTCP(Int16StringReceiver):
    def stringReceived(self, data):
        query = dns.message.from_wire(data)
        self.factory.queries += 1
        self.sendString(self.factory.zone(query, True).to_wire(max_size=65535))


class FakeTCPFactory(protocol.Factory):
    protocol = FakeTCP

    def __init__(self, zone):
        self.zone = zone
        self.queries = 0


async def udp_and_tcp_on_one_port(datagrams, factory, attempts=20):
    """A UDP port picked by the kernel and TCP on the same number (retried: the
    machine is shared, and another process may take the TCP port first)."""
    for _ in range(attempts):
        udp = reactor.listenUDP(0, datagrams, interface="127.0.0.1")
        try:
            return udp, reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
        except CannotListenError:
            await udp.stopListening()
    raise RuntimeError("no port free for both UDP and TCP")


def resolution(name, rdtype, port, **limits):
    return Resolution(
        dns.name.from_text(name), dns.rdatatype.from_text(rdtype), cache=ResolverCache(reactor.seconds),
        hints=parse_hints(". 300 NS a.root.\na.root. 300 A 127.0.0.1\n"), clock=reactor.seconds,
        upstream_port=port, limits=Limits(**limits), rng=random.SystemRandom(),
    )


@implementer(IReactorUDP, IReactorTCP, IReactorTime)
class PortsOnlyReactor:
    """The running reactor seen through IReactorUDP/TCP/Time only (no IReactorFDSet),
    as a reactor such as IOCP would be: the resolver must fall back to listenUDP."""

    def __init__(self, real):
        self.real = real

    def listenUDP(self, *args, **kwargs):
        return self.real.listenUDP(*args, **kwargs)

    def connectTCP(self, *args, **kwargs):
        return self.real.connectTCP(*args, **kwargs)

    def callLater(self, *args, **kwargs):
        return self.real.callLater(*args, **kwargs)

    def seconds(self):
        return self.real.seconds()


REACTORS = [pytest.param(reactor, id="fdset"), pytest.param(PortsOnlyReactor(reactor), id="ports-only")]


def test_the_exchange_follows_the_reactors_interfaces():
    assert IReactorFDSet.providedBy(reactor) and udp_exchange_for(reactor) is _UDPExchange
    assert udp_exchange_for(PortsOnlyReactor(reactor)) is _PortExchange


@pytest.mark.parametrize("driver", REACTORS)
@pytest_twisted.ensureDeferred
async def test_each_upstream_query_gets_a_fresh_port_and_random_id(driver):
    zone = ZoneServer(".", ZONE)
    server = FakeUDPServer(zone)
    udp = reactor.listenUDP(0, server, interface="127.0.0.1")
    try:
        port = udp.getHost().port
        for _ in range(8):
            result = await ResolutionRunner(resolution("www.example.", "A", port), driver).run()
            assert result.rcode == dns.rcode.NOERROR
            assert result.answer[0][0].address == "192.0.2.1"
        assert len(set(server.sources)) >= 7
        assert len(set(server.ids)) >= 7
    finally:
        await udp.stopListening()


@pytest.mark.parametrize("driver", REACTORS)
@pytest_twisted.ensureDeferred
async def test_truncated_udp_answer_is_fetched_over_tcp(driver):
    zone = ZoneServer(".", ZONE)
    tcp_factory = FakeTCPFactory(zone)
    udp, tcp = await udp_and_tcp_on_one_port(FakeUDPServer(zone), tcp_factory)
    port = udp.getHost().port
    try:
        r = resolution("big.example.", "TXT", port, edns_payload=512)
        result = await ResolutionRunner(r, driver).run()
        assert result.rcode == dns.rcode.NOERROR and len(result.answer[0]) == 30
        assert tcp_factory.queries == 1
        assert [s.outcome for s in r.steps] == ["truncated", "answer"]
    finally:
        await udp.stopListening()
        await tcp.stopListening()


@pytest.mark.parametrize("driver", REACTORS)
@pytest_twisted.ensureDeferred
async def test_unreachable_port_fails_fast_and_silence_times_out(driver):
    probe = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
    closed_port = probe.getHost().port
    await probe.stopListening()
    started = reactor.seconds()
    result = await ResolutionRunner(resolution("www.example.", "A", closed_port), driver).run()
    assert result.rcode == dns.rcode.SERVFAIL
    assert reactor.seconds() - started < 1.0  # ICMP port unreachable, not the 1.5 s timeout

    silent = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
    try:
        r = resolution("www.example.", "A", silent.getHost().port, server_timeout=0.2, time_budget=0.5)
        started = reactor.seconds()
        result = await ResolutionRunner(r, driver).run()
        assert result.rcode == dns.rcode.SERVFAIL
        assert 0.15 < reactor.seconds() - started < 2.0
        assert r.steps[0].outcome == "timeout"
    finally:
        await silent.stopListening()
