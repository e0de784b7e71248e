"""Query bytes in, response bytes out: the authoritative ``IQueryHandler``.

No Twisted here (it is driven by :mod:`.transport`, and by tests directly).

The hot path never touches the codec. A full dnspython decode+encode costs
about 150 us, an order of magnitude more than the rest of a query's trip
through the reactor, so every answer built is kept as a *prepared reply*:
the response's header bytes 2..12 (for RD clear and set) and the bytes after
the question, keyed by what determines them:

    lowercased qname + qtype + qclass, EDNS present?, size limit, DO bit

(the size limit is 512 without EDNS over UDP, the client's payload clamped to
ours with EDNS, 65535 over TCP). A repeated question is then answered by
splicing: the query's ID, the prepared flags, the question exactly as sent
(case kept: its compression targets are at the same offsets), the prepared
tail. RRsets with several records are prepared in every rotation and served
in turn, so round robin survives the cache. Anything unusual (other opcodes,
several questions, EDNS options we would have to act on, TSIG, AXFR) misses
the key and takes the full path; the cache is cleared whenever the zones
change.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from collections.abc import Callable, Mapping

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from zope.interface import implementer

from twisted_netapps import dnswire
from twisted_netapps.dns import authority
from twisted_netapps.dns.interfaces import IQueryHandler
from twisted_netapps.dns.zones import LoadedZone
from twisted_netapps.dnswire import reply_size_limit, scan_plain_query

DEFAULT_UDP_PAYLOAD = 1232  # DNS flag day 2020: no fragmentation on any path
MAX_ROTATIONS = 16
# mids[] is indexed by the query's RD bit: the low bit of the flags' first byte.
_RD_IN_BYTE_2 = dnswire.RD >> 8
AXFR_RECORDS_PER_MESSAGE = 200

# Exceptions dnspython raises for malformed input (all FormError subclasses
# or plain DNSException), plus the few it lets through from the stdlib.
_MALFORMED = (dns.exception.DNSException, ValueError, IndexError, UnicodeError)


class Counters:
    """Counters the responder keeps; the service maps them onto ServiceStats."""

    def __init__(self, incr: Callable[[str, int], None] | None = None) -> None:
        self.incr = incr or (lambda name, amount=1: None)


def _rotations(rrsets: list[dns.rrset.RRset]) -> int:
    sizes = [len(r) for r in rrsets if len(r) > 1]
    if not sizes:
        return 1
    count = math.lcm(*sizes)
    return count if count <= MAX_ROTATIONS else max(sizes)


def _rotated(rrset: dns.rrset.RRset, k: int) -> dns.rrset.RRset:
    if len(rrset) < 2 or k % len(rrset) == 0:
        return rrset
    items = list(rrset)
    k %= len(items)
    out = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
    out.ttl = rrset.ttl
    for rd in items[k:] + items[:k]:
        out.add(rd)
    return out


_NO_EDNS_SUFFIX = (b"N" + reply_size_limit(False, None, 0).to_bytes(2, "big"),
                   b"N" + reply_size_limit(True, None, 0).to_bytes(2, "big"))


def _prepared_key(query: bytes, scan: tuple, over_tcp: bool, max_udp: int) -> bytes:
    """The prepared-reply key of a plain query (*scan*: its ``scan_plain_query``):
    what determines the reply after the ID.

    The question (name lowercased), EDNS present or not, the reply size
    limit and the DO bit.
    """
    root, end, edns_payload, do = scan
    question = query[dnswire.HEADER_SIZE:root].lower() + query[root:end]
    if edns_payload is None:
        return question + _NO_EDNS_SUFFIX[over_tcp]
    limit = reply_size_limit(over_tcp, edns_payload, max_udp)
    return question + b"E" + limit.to_bytes(2, "big") + (b"D" if do else b"-")


@implementer(IQueryHandler)
class Responder:
    """Answers queries for one set of zones (a view)."""

    def __init__(
        self,
        zones: Mapping[dns.name.Name, LoadedZone] | None = None,
        *,
        transfer_acl: Mapping[dns.name.Name, list] | None = None,
        max_udp_payload: int = DEFAULT_UDP_PAYLOAD,
        max_prepared: int = 20000,
        counters: Counters | None = None,
        log_transfer: Callable[..., None] | None = None,
        log_query: Callable[..., None] | None = None,
    ) -> None:
        self.max_udp_payload = max_udp_payload
        self.max_prepared = max_prepared
        self.counters = counters or Counters()
        self.log_transfer = log_transfer or (lambda **kw: None)
        self.log_query = log_query
        if log_query is not None:  # chosen once: the unlogged hot path pays nothing for it
            self.handle = self._handle_logged
        # normalised key -> (flags for RD clear/set, tails, turn counter)
        self._prepared: dict[bytes, tuple[tuple[bytes, bytes], list[bytes], itertools.count]] = {}
        # exact query bytes after the ID -> cycle over whole replies after the ID,
        # per transport (the size limit differs)
        self._exact: tuple[dict[bytes, itertools.cycle], dict[bytes, itertools.cycle]] = ({}, {})
        self._turn = itertools.count()
        self.zones: Mapping[dns.name.Name, LoadedZone] = {}
        self.transfer_acl: Mapping[dns.name.Name, list] = {}
        self.set_zones(zones or {}, transfer_acl or {})

    def set_zones(self, zones: Mapping[dns.name.Name, LoadedZone], transfer_acl=None) -> None:
        """Serve *zones* from now on (prepared replies are dropped)."""
        self.zones = dict(zones)
        if transfer_acl is not None:
            self.transfer_acl = dict(transfer_acl)
        self._prepared.clear()
        for exact in self._exact:
            exact.clear()

    # -- IQueryHandler

    def observe_queries(self, on: bool) -> None:
        """Turn the per-query hook on or off. The status page's sampler turns it off for
        the rest of a second whose share of events is used up: over the share, a query
        takes the unlogged path and costs the page nothing."""
        if on and self.log_query is not None:
            self.handle = self._handle_logged
        else:
            self.__dict__.pop("handle", None)

    def _handle_logged(self, query: bytes, peer, over_tcp: bool):
        reply = Responder.handle(self, query, peer, over_tcp)
        self.log_query(query, reply, peer, over_tcp)
        return reply

    def handle(self, query: bytes, peer, over_tcp: bool):
        # 1. The very same question bytes seen before (same flags, case, EDNS):
        #    one dict lookup, the ID spliced in.
        exact = self._exact[over_tcp]
        replies = exact.get(query[2:])
        if replies is not None:
            return query[:2] + next(replies)
        # 2. The same question in another form (case, ID, RD, EDNS options).
        scan = scan_plain_query(query)
        if scan is not None:
            key = _prepared_key(query, scan, over_tcp, self.max_udp_payload)
            entry = self._prepared.get(key)
            if entry is not None:
                return self._splice(entry, query, scan[1], exact)
            return self._full(query, peer, over_tcp, (key, scan[1]))
        return self._full(query, peer, over_tcp, None)

    def _splice(self, entry, query: bytes, qend: int, exact: dict) -> bytes:
        mids, tails, turn = entry
        head = mids[query[2] & _RD_IN_BYTE_2] + query[dnswire.HEADER_SIZE:qend]
        k = next(turn) % len(tails)
        if self.max_prepared <= 0:
            return query[:2] + head + tails[k]
        if len(exact) >= self.max_prepared:
            del exact[next(iter(exact))]  # oldest first
        # this form of the question continues the rotation where it stands
        exact[query[2:]] = itertools.cycle([head + tail for tail in tails[k + 1:] + tails[:k + 1]])
        return query[:2] + head + tails[k]

    # -- the full path

    def _full(self, query: bytes, peer, over_tcp: bool, fast):
        self.counters.incr("full_path", 1)
        if len(query) < dnswire.HEADER_SIZE or dnswire.is_response(query):
            self.counters.incr("dropped", 1)
            return None  # never answer a response, nor a fragment of a header
        try:
            msg = dns.message.from_wire(query)
        except dns.message.UnknownTSIGKey:
            return self._raw_error(query, dns.rcode.NOTAUTH)
        except _MALFORMED:
            return self._raw_error(query, dns.rcode.FORMERR)
        if msg.opcode() != dns.opcode.QUERY:
            return self._error(msg, dns.rcode.NOTIMP)
        if msg.edns > 0:
            return self._error(msg, dns.rcode.BADVERS)
        if len(msg.question) != 1:
            return self._error(msg, dns.rcode.FORMERR)
        question = msg.question[0]
        qtype = question.rdtype
        if question.rdclass != dns.rdataclass.IN:
            return self._error(msg, dns.rcode.REFUSED)
        if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._transfer(msg, question.name, qtype, peer, over_tcp)
        if qtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY):
            return self._error(msg, dns.rcode.FORMERR)
        if qtype in (dns.rdatatype.MAILA, dns.rdatatype.MAILB):
            return self._error(msg, dns.rcode.NOTIMP)
        result = authority.answer(self.zones, question.name, qtype)
        self.counters.incr(f"built_{dns.rcode.to_text(result.rcode).lower()}", 1)
        variants = self._render_variants(msg, result, self._size_limit(msg, over_tcp))
        if fast is not None and msg.tsig is None and self.max_prepared > 0:
            return self._prepare(fast, variants, query, over_tcp)
        return variants[next(self._turn) % len(variants)]

    def _size_limit(self, msg: dns.message.Message, over_tcp: bool) -> int:
        return reply_size_limit(over_tcp, msg.payload if msg.edns >= 0 else None, self.max_udp_payload)

    def _response(self, msg: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(msg, our_payload=self.max_udp_payload)
        if msg.edns >= 0:
            # RFC 3225: the DO bit is copied; we sign nothing, so AD stays clear.
            response.use_edns(0, msg.ednsflags & dns.flags.DO, self.max_udp_payload)
        return response

    def _render_variants(self, msg, result: authority.Answer, limit: int) -> list[bytes]:
        variants = []
        for k in range(_rotations(result.answer)):
            response = self._response(msg)
            if result.authoritative:
                response.flags |= dns.flags.AA
            response.set_rcode(result.rcode)
            response.answer = [_rotated(r, k) for r in result.answer]
            response.authority = list(result.authority)
            response.additional = list(result.additional)
            variants.append(response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False))
        return variants

    def _prepare(self, fast, variants: list[bytes], query: bytes, over_tcp: bool) -> bytes:
        key, qend = fast
        head = variants[0][2:dnswire.HEADER_SIZE]
        flags = (head[0] << 8) | head[1]
        mids = tuple(((flags & ~dnswire.RD) | rd).to_bytes(2, "big") + head[2:] for rd in (0, dnswire.RD))
        tails = [v[qend:] for v in variants]
        entry = (mids, tails, itertools.count())
        prepared = self._prepared
        if self.max_prepared > 0:
            if len(prepared) >= self.max_prepared:
                del prepared[next(iter(prepared))]  # oldest first
            prepared[key] = entry
        return self._splice(entry, query, qend, self._exact[over_tcp])

    def _error(self, msg: dns.message.Message, rcode: int) -> bytes:
        self.counters.incr(f"built_{dns.rcode.to_text(rcode).lower()}", 1)
        response = self._response(msg)
        response.set_rcode(rcode)
        return response.to_wire(max_size=65535)

    def _raw_error(self, query: bytes, rcode: int) -> bytes | None:
        self.counters.incr(f"built_{dns.rcode.to_text(rcode).lower()}", 1)
        return dnswire.error_reply(query, rcode)

    # -- zone transfers

    def _transfer(self, msg, qname: dns.name.Name, qtype: int, peer, over_tcp: bool):
        zone = self.zones.get(qname)
        if zone is None:
            return self._error(msg, dns.rcode.NOTAUTH)
        if not self._transfer_allowed(qname, peer[0]):
            self.log_transfer(event="refused", zone=qname.to_text(), peer=peer[0], records=0)
            return self._error(msg, dns.rcode.REFUSED)
        if not over_tcp:
            # IXFR over UDP (RFC 1995 4): our SOA alone tells the client to
            # come back over TCP; AXFR is TCP-only (RFC 5936 4.2).
            if qtype == dns.rdatatype.AXFR:
                return self._error(msg, dns.rcode.FORMERR)
            response = self._response(msg)
            response.flags |= dns.flags.AA
            response.answer = [zone.zone.find_rrset(qname, dns.rdatatype.SOA)]
            return response.to_wire(max_size=self._size_limit(msg, False))
        messages, records = transfer_messages(msg, zone, self._response)
        self.counters.incr("transfers", 1)
        self.log_transfer(event="sent", zone=qname.to_text(), peer=peer[0], records=records)
        return messages

    def _transfer_allowed(self, origin: dns.name.Name, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.transfer_acl.get(origin, ()))


def transfer_messages(msg, zone: LoadedZone, make_response) -> tuple[list[bytes], int]:
    """The AXFR reply (RFC 5936): SOA, every other RRset, SOA, in as many messages as needed.

    Returns the messages and the number of records sent.
    """
    soa = zone.zone.find_rrset(zone.origin, dns.rdatatype.SOA)
    rrsets = [soa]
    for name, node in zone.zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype == dns.rdatatype.SOA and name == zone.origin:
                continue
            rrsets.append(authority.rrset_of(name, rdataset))
    rrsets.append(soa)
    batches, batch, count = [], [], 0
    for rrset in rrsets:
        if batch and count + len(rrset) > AXFR_RECORDS_PER_MESSAGE:
            batches.append(batch)
            batch, count = [], 0
        batch.append(rrset)
        count += len(rrset)
    batches.append(batch)
    out = []
    for batch in batches:
        out.extend(_render_batch(msg, batch, make_response))
    return out, sum(len(r) for r in rrsets)


def _render_batch(msg, batch, make_response) -> list[bytes]:
    response = make_response(msg)
    response.flags |= dns.flags.AA
    response.answer = batch
    try:
        return [response.to_wire(max_size=65535, want_shuffle=False)]
    except dns.exception.TooBig:
        if len(batch) == 1:
            raise  # one RRset over 64 KiB: the zone cannot be transferred
        half = len(batch) // 2
        return _render_batch(msg, batch[:half], make_response) + _render_batch(msg, batch[half:], make_response)
