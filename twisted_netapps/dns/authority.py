"""Authoritative answers from loaded zones: pure, no I/O, no wire format.

:func:`answer` takes the zones a listener serves, a name and a type, and
returns an :class:`Answer` (rcode, AA, the three sections as dnspython
RRsets). What it implements, as BIND does and stock ``twisted.names`` does
not:

- the closest enclosing zone is authoritative; a name in none is REFUSED;
- a name at or below a zone cut gets a referral: NS in authority, glue in
  additional, AA clear (except DS at the cut, which is parent-side data);
- CNAMEs are followed through every zone served (bounded, loops stopped),
  and the rcode is the last link's (RFC 6604);
- wildcards synthesise answers per RFC 4592 (the closest encloser decides;
  empty non-terminals block them);
- NXDOMAIN and NODATA both carry the zone's SOA with TTL
  min(SOA TTL, SOA minimum) (RFC 2308), and empty non-terminals are NODATA;
- addresses of MX, NS and SRV targets go in additional when known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from twisted_netapps.dns.zones import LoadedZone

IN = dns.rdataclass.IN
A, AAAA, NS, CNAME, MX, SRV, SOA, DS, ANY = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.NS, dns.rdatatype.CNAME,
    dns.rdatatype.MX, dns.rdatatype.SRV, dns.rdatatype.SOA, dns.rdatatype.DS,
    dns.rdatatype.ANY,
)
MAX_CNAME_CHAIN = 8
WILDCARD = b"*"


@dataclass
class Answer:
    rcode: int = dns.rcode.NOERROR
    authoritative: bool = True
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)


def find_zone(zones: Mapping[dns.name.Name, LoadedZone], name: dns.name.Name) -> LoadedZone | None:
    """The closest enclosing zone of *name* among *zones* (longest origin match)."""
    while True:
        zone = zones.get(name)
        if zone is not None:
            return zone
        if name == dns.name.root:
            return None
        name = name.parent()


def rrset_of(owner: dns.name.Name, rdataset) -> dns.rrset.RRset:
    """*rdataset* as an RRset owned by *owner* (a wildcard's data under the queried name)."""
    rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype)
    rrset.update(rdataset)
    rrset.ttl = rdataset.ttl
    return rrset


def _highest_cut(zone: LoadedZone, name: dns.name.Name) -> dns.name.Name | None:
    """The zone cut nearest the apex at or above *name*, if any."""
    if not zone.cuts:
        return None
    found = None
    while name != zone.origin:
        if name in zone.cuts:
            found = name  # keep walking up: the highest cut wins
        name = name.parent()
    return found


def _closest_encloser(zone: LoadedZone, name: dns.name.Name) -> dns.name.Name:
    while name not in zone.names:
        name = name.parent()
    return name


class _Lookup:
    """One question's walk through the zones: accumulates the Answer."""

    def __init__(self, zones: Mapping[dns.name.Name, LoadedZone], qtype: int) -> None:
        self.zones = zones
        self.qtype = qtype
        self.result = Answer()

    def run(self, qname: dns.name.Name) -> Answer:
        zone = find_zone(self.zones, qname)
        if zone is None:
            return Answer(dns.rcode.REFUSED, authoritative=False)
        if self.qtype == DS and qname == zone.origin and qname != dns.name.root:
            # DS lives on the parent side of a cut (RFC 4035 3.1.4.1): if we
            # serve the parent too, it answers.
            parent = find_zone(self.zones, qname.parent())
            if parent is not None:
                zone = parent
        seen = {qname}
        for _ in range(MAX_CNAME_CHAIN + 1):
            target = self._step(zone, qname)
            if target is None or target in seen:
                break
            seen.add(target)
            zone = find_zone(self.zones, target)
            if zone is None:  # the chain leaves our zones: the resolver follows it
                break
            qname = target
        self._add_additional()
        return self.result

    def _step(self, zone: LoadedZone, qname: dns.name.Name) -> dns.name.Name | None:
        """Answer *qname* in *zone*; return a CNAME target to follow, else None."""
        result = self.result
        cut = _highest_cut(zone, qname)
        if cut is not None and not (cut == qname and self.qtype == DS):
            self._referral(zone, cut)
            return None
        node = zone.node(qname)
        owner = qname
        if node is None:
            if qname in zone.names:  # empty non-terminal: the name exists, no data
                self._negative(zone, dns.rcode.NOERROR)
                return None
            encloser = _closest_encloser(zone, qname)
            source = dns.name.Name((WILDCARD,) + encloser.labels)
            node = zone.node(source)
            if node is None or encloser in zone.cuts:
                self._negative(zone, dns.rcode.NXDOMAIN)
                return None
        if self.qtype == ANY:
            result.answer.extend(rrset_of(owner, rds) for rds in node.rdatasets)
            return None
        rdataset = node.get_rdataset(IN, self.qtype)
        if rdataset is not None:
            result.answer.append(rrset_of(owner, rdataset))
            return None
        cname = node.get_rdataset(IN, CNAME)
        if cname is not None:
            result.answer.append(rrset_of(owner, cname))
            return cname[0].target
        self._negative(zone, dns.rcode.NOERROR)
        return None

    def _negative(self, zone: LoadedZone, rcode: int) -> None:
        self.result.rcode = rcode
        self.result.authority.append(zone.soa)

    def _referral(self, zone: LoadedZone, cut: dns.name.Name) -> None:
        ns = zone.node(cut).get_rdataset(IN, NS)
        result = self.result
        if not result.answer:  # a CNAME before the cut stays authoritative
            result.authoritative = False
        result.authority.append(rrset_of(cut, ns))

    def _add_additional(self) -> None:
        result = self.result
        present = {(r.name, r.rdtype) for r in result.answer}
        targets: list[dns.name.Name] = []
        for rrset in (*result.answer, *result.authority):
            if rrset.rdtype == MX:
                targets.extend(rd.exchange for rd in rrset)
            elif rrset.rdtype == NS:
                targets.extend(rd.target for rd in rrset)
            elif rrset.rdtype == SRV:
                targets.extend(rd.target for rd in rrset)
        for target in dict.fromkeys(targets):
            zone = find_zone(self.zones, target)
            if zone is None:
                continue
            node = zone.node(target)
            if node is None:
                continue
            for rdtype in (A, AAAA):
                if (target, rdtype) in present:
                    continue
                rdataset = node.get_rdataset(IN, rdtype)
                if rdataset is not None:
                    result.additional.append(rrset_of(target, rdataset))
                    present.add((target, rdtype))


def answer(zones: Mapping[dns.name.Name, LoadedZone], qname: dns.name.Name, qtype: int) -> Answer:
    """The authoritative answer for (*qname*, *qtype*, IN) from *zones* (origin -> zone)."""
    return _Lookup(zones, qtype).run(qname)
