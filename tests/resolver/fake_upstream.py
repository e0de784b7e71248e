"""Scripted upstream servers for the resolver core's unit tests (no sockets).

:class:`ZoneServer` answers like an authoritative server for one zone
(referrals with glue at cuts, AA answers, CNAMEs chased inside the zone,
NXDOMAIN/NODATA with the SOA); any callable ``(query, over_tcp) -> reply``
can stand in for a server to script lame, poisoned or silent behaviour.
:func:`drive` runs a :class:`Resolution` against a dict of such servers,
advancing a ``task.Clock`` on timeouts, and records every exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from twisted_netapps.resolver.iterate import Done, SendQuery

TIMEOUT = object()  # a server that never answers


class ZoneServer:
    def __init__(self, origin: str, text: str) -> None:
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_text(text, self.origin, relativize=False, check_origin=False)

    def _rrset(self, name, rdtype):
        return self.zone.get_rrset(name, rdtype)

    def __call__(self, query: dns.message.Message, over_tcp: bool):
        response = dns.message.make_response(query)
        q = query.question[0]
        name, rdtype = q.name, q.rdtype
        if not name.is_subdomain(self.origin):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        # A delegation between the apex and the name: referral with glue.
        labels = len(name) - len(self.origin)
        for depth in range(1, labels + 1):
            cut = dns.name.Name(name.labels[labels - depth:])
            ns = self._rrset(cut, dns.rdatatype.NS)
            if ns is not None and cut != self.origin:
                response.authority.append(ns)
                for rdata in ns:
                    for gtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                        glue = self._rrset(rdata.target, gtype)
                        if glue is not None:
                            response.additional.append(glue)
                return response
        response.flags |= dns.flags.AA
        current = name
        for _ in range(12):
            node = self.zone.get_node(current)
            if node is None:
                if current == name:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                    response.authority.append(self._soa())
                return response
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                response.answer.append(dns.rrset.from_rdata_list(current, rdataset.ttl, list(rdataset)))
                return response
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                if current == name:
                    response.authority.append(self._soa())
                return response
            response.answer.append(dns.rrset.from_rdata_list(current, cname.ttl, list(cname)))
            current = cname[0].target
            if not current.is_subdomain(self.origin):
                return response
        return response

    def _soa(self):
        soa = self._rrset(self.origin, dns.rdatatype.SOA).copy()
        soa.ttl = min(soa.ttl, soa[0].minimum)
        return soa


@dataclass
class Exchange:
    server: str
    qname: str
    qtype: str
    over_tcp: bool
    edns: bool


@dataclass
class Run:
    result: object
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def servers(self) -> list[str]:
        return [e.server for e in self.exchanges]


def drive(resolution, servers: dict, clock, *, udp_limit: int = 1232, max_steps: int = 500) -> Run:
    """Run *resolution* to completion against *servers* (address -> handler)."""
    run = Run(None)
    action = resolution.start()
    for _ in range(max_steps):
        if isinstance(action, Done):
            run.result = action.result
            return run
        assert isinstance(action, SendQuery)
        query = dns.message.from_wire(action.wire)
        q = query.question[0]
        run.exchanges.append(Exchange(action.server, q.name.to_text(), dns.rdatatype.to_text(q.rdtype),
                                      action.over_tcp, query.edns >= 0))
        handler = servers.get(action.server, TIMEOUT)
        reply = TIMEOUT if handler is TIMEOUT else handler(query, action.over_tcp)
        if reply is TIMEOUT:
            clock.advance(action.timeout)
            action = resolution.timed_out()
            continue
        datagrams = reply if isinstance(reply, list) else [reply]
        clock.advance(0.001)
        next_action = None
        for item in datagrams:
            source = (action.server, action.port)
            if isinstance(item, tuple):
                item, source = item
            wire = item if isinstance(item, bytes) else item.to_wire(max_size=65535)
            if not action.over_tcp and isinstance(item, dns.message.Message) and len(wire) > (query.payload if query.edns >= 0 else 512):
                item.flags |= dns.flags.TC
                item.answer, item.authority, item.additional = [], [], []
                wire = item.to_wire(max_size=65535)
            next_action = resolution.receive(wire, source)
            if next_action is not None:
                break
        if next_action is None:  # everything ignored: the query times out
            clock.advance(action.timeout)
            next_action = resolution.timed_out()
        action = next_action
    raise AssertionError("resolution did not finish")
