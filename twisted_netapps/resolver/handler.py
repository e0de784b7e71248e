"""The resolver's query handler: client policy, cache hits, coalescing.

Plugged into the shared UDP/TCP adapters of :mod:`twisted_netapps.dns.transport`
(``IQueryHandler``). Per client query:

1. the plain shape is parsed by hand (:func:`dnswire.parse_plain_query`),
   anything else by dnspython (FORMERR, NOTIMP, BADVERS answered here);
2. clients outside the allowed networks get REFUSED (RA clear): no open
   resolver;
3. a cached answer is served from its prepared wire form (ID, flags and
   TTLs patched), without dnspython;
4. otherwise one :class:`Resolution` per distinct question runs (clients
   asking the same question meanwhile wait for it: coalescing), and its
   result is prepared, cached and sent to each of them.

Over UDP a reply larger than the client's EDNS payload (512 without EDNS)
goes out with TC set and no records, so the client retries over TCP.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from typing import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps import dnswire
from twisted_netapps.dns.transport import IQueryHandler
from twisted_netapps.dnswire import PlainQuery, parse_plain_query, reply_size_limit
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.hints import RootHints
from twisted_netapps.resolver.iterate import Limits, Resolution, Result
from twisted_netapps.resolver.prepared import PreparedAnswer, prepare_answer, splice_answer
from twisted_netapps.resolver.upstream import ResolutionRunner

log = Logger(namespace="netapps.resolver")

# Types a recursive resolver does not look up for clients.
_REFUSED_TYPES = {dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY}
_REFUSED_QTYPE_BYTES = {struct.pack("!H", t) for t in _REFUSED_TYPES}
_MAX_ACL_MEMO = 4096


class ClientACL:
    """Which client addresses may recurse; decisions memoised per address."""

    def __init__(self, networks: list[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._memo: dict[str, bool] = {}

    def known_allowed(self, host: str) -> bool:
        """True if *host* was already checked and is allowed (a dict lookup)."""
        return self._memo.get(host) is True

    def allows(self, host: str) -> bool:
        decision = self._memo.get(host)
        if decision is None:
            try:
                address = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return False
            if address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            decision = any(address in network for network in self.networks)
            if len(self._memo) >= _MAX_ACL_MEMO:
                self._memo.clear()
            self._memo[host] = decision
        return decision


@implementer(IQueryHandler)
class RecursiveQueryHandler:
    def __init__(
        self,
        *,
        cache: ResolverCache,
        hints: RootHints,
        reactor,
        stats,
        acl: ClientACL,
        limits: Limits = Limits(),
        upstream_port: int = 53,
        forwarders: list[tuple[str, int]] | None = None,
        max_udp_payload: int = 1232,
        failure_ttl: int = 1,
        log_queries: bool = False,
        max_resolutions: int = 1000,
        rng: random.Random | None = None,
        runner_factory: Callable[[Resolution], ResolutionRunner] | None = None,
    ) -> None:
        self.cache = cache
        self.hints = hints
        self.reactor = reactor
        self.clock = reactor.seconds
        self.stats = stats
        self.acl = acl
        self.limits = limits
        self.upstream_port = upstream_port
        self.forwarders = forwarders
        self.max_udp_payload = max_udp_payload
        self.failure_ttl = failure_ttl
        self.log_queries = log_queries
        self.max_resolutions = max_resolutions
        self.rng = rng
        self.runner_factory = runner_factory or (lambda resolution: ResolutionRunner(resolution, reactor, stats))
        self._in_flight: dict[bytes, list[defer.Deferred]] = {}
        self.recent = NULL_RECENT  # the status page's events (set by the service builder)

    # -- IQueryHandler -----------------------------------------------------
    def handle(self, query: bytes, peer, over_tcp: bool):
        parsed = parse_plain_query(query)
        if parsed is None:
            return self._handle_unusual(query, peer, over_tcp)
        # The hot path, inlined (profiled: method calls were a third of a
        # hit's cost): a client already known to be allowed, an answer in
        # the cache. Everything else goes through _answer's full checks.
        if self.acl.known_allowed(peer[0]):
            now = self.clock()
            prepared = self.cache.get_answer(parsed.key, now)
            if prepared is not None:
                self.stats.incr("cache_hits")
                limit = reply_size_limit(over_tcp, parsed.edns_payload, self.max_udp_payload)
                return prepared.reply(parsed, now, limit=limit, our_payload=self.max_udp_payload)
        return self._answer(parsed, peer, over_tcp)

    def _answer(self, query: PlainQuery, peer, over_tcp: bool):
        if not self.acl.allows(peer[0]):
            self.stats.incr("refused")
            return self._refuse(query, dns.rcode.REFUSED, recursion_available=False)
        limit = reply_size_limit(over_tcp, query.edns_payload, self.max_udp_payload)
        now = self.clock()
        prepared = self.cache.get_answer(query.key, now)
        if prepared is not None:
            self.stats.incr("cache_hits")
            return prepared.reply(query, now, limit=limit, our_payload=self.max_udp_payload)
        if query.qclass != dns.rdataclass.IN or query.key[-4:-2] in _REFUSED_QTYPE_BYTES:
            self.stats.incr("refused")
            return self._refuse(query, dns.rcode.REFUSED)
        if not query.rd:
            # Non-recursive queries are answered from the cache only (no snooping misses).
            self.stats.incr("refused")
            return self._refuse(query, dns.rcode.REFUSED)
        self.stats.incr("cache_misses")
        if len(self._in_flight) >= self.max_resolutions and query.key not in self._in_flight:
            # Overloaded (or flooded with unique names): fail fast rather than
            # pile up sockets and timers without bound.
            self.stats.incr("overload_servfail")
            return self._refuse(query, dns.rcode.SERVFAIL)
        d = self._resolve(query)
        d.addCallback(self._reply, query, limit)
        return d

    def _refuse(self, query: PlainQuery, rcode: int, *, recursion_available: bool = True) -> bytes | None:
        """Header and question only, with *rcode* (and our OPT if the client sent one)."""
        return dnswire.error_reply(
            query.data, rcode, recursion_available=recursion_available,
            opt_payload=None if query.edns_payload is None else self.max_udp_payload,
        )

    def _reply(self, prepared: PreparedAnswer, query: PlainQuery, limit: int) -> bytes:
        reply = prepared.reply(query, self.clock(), limit=limit, our_payload=self.max_udp_payload)
        if dnswire.rcode_of(reply) == dns.rcode.SERVFAIL:
            self.stats.incr("servfail")
        if dnswire.is_truncated(reply):
            self.stats.incr("truncated")
        return reply

    # -- resolution, coalesced -----------------------------------------------
    def _resolve(self, query: PlainQuery) -> defer.Deferred:
        waiter: defer.Deferred = defer.Deferred()
        waiters = self._in_flight.get(query.key)
        if waiters is not None:
            self.stats.incr("coalesced")
            waiters.append(waiter)
            return waiter
        self._in_flight[query.key] = [waiter]
        qname = dnswire.question_name(query)
        resolution = Resolution(
            qname, query.qtype,
            cache=self.cache, hints=self.hints, clock=self.clock, limits=self.limits,
            upstream_port=self.upstream_port, forwarders=self.forwarders, rng=self.rng,
        )
        started = self.clock()
        d = self.runner_factory(resolution).run()
        d.addCallback(self._finished, query, resolution, started)
        d.addErrback(self._crashed, query, qname)
        d.addCallback(self._wake, query.key)
        return waiter

    def _finished(self, result: Result, query: PlainQuery, resolution: Resolution, started: float):
        now = self.clock()
        self.stats.incr("upstream_queries", resolution.queries_sent)
        self.recent.record("resolution", question=f"{result.qname} {dns.rdatatype.to_text(result.qtype)}",
                           rcode=dns.rcode.to_text(result.rcode), ms=round((now - started) * 1000, 1),
                           upstream_queries=resolution.queries_sent, reason=result.reason or "")
        if result.rcode == dns.rcode.SERVFAIL:
            log.info(
                "resolver: SERVFAIL for {qname} {qtype}: {reason}",
                qname=str(result.qname), qtype=dns.rdatatype.to_text(result.qtype), reason=result.reason,
            )
        elif self.log_queries:
            log.info(
                "resolver: {qname} {qtype} -> {rcode} in {ms:.1f} ms, {queries} upstream queries",
                qname=str(result.qname), qtype=dns.rdatatype.to_text(result.qtype),
                rcode=dns.rcode.to_text(result.rcode), ms=(now - started) * 1000, queries=resolution.queries_sent,
            )
        prepared = None
        if result.answer_wire is not None:
            prepared = splice_answer(len(query.question), result.rcode, result.answer, result.answer_wire, now)
        if prepared is None:
            prepared = prepare_answer(
                result.qname, result.qtype, query.qclass, result.rcode, result.answer, result.authority, now
            )
        if result.rcode == dns.rcode.SERVFAIL:
            # RFC 9520: remember a failure briefly instead of hammering the servers.
            prepared.ttl = self.failure_ttl
        self.cache.put_answer(query.key, prepared)
        return prepared

    def _crashed(self, failure, query: PlainQuery, qname: dns.name.Name):
        log.failure("resolver: resolution of {qname} crashed", failure, qname=str(qname))
        self.stats.incr("errors")
        return prepare_answer(qname, query.qtype, query.qclass, dns.rcode.SERVFAIL, [], [], self.clock())

    def _wake(self, prepared: PreparedAnswer, key: bytes) -> None:
        for waiter in self._in_flight.pop(key, []):
            waiter.callback(prepared)

    # -- everything that is not a plain query ---------------------------------
    def _handle_unusual(self, data: bytes, peer, over_tcp: bool):
        try:
            message = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None
        except (dns.exception.DNSException, ValueError):
            self.stats.incr("formerr")
            return dnswire.error_reply(data, dns.rcode.FORMERR)
        if message.flags & dns.flags.QR:
            return None  # never answer answers
        allowed = self.acl.allows(peer[0])
        if not allowed:
            self.stats.incr("refused")
            return self._error(message, dns.rcode.REFUSED, allowed)
        if message.opcode() != dns.opcode.QUERY:
            return self._error(message, dns.rcode.NOTIMP, allowed)
        if len(message.question) != 1:
            self.stats.incr("formerr")
            return self._error(message, dns.rcode.FORMERR, allowed)
        if message.edns > 0:
            return self._error(message, dns.rcode.BADVERS, allowed)
        question = message.question[0]
        qname_wire = question.name.to_wire()
        question_bytes = qname_wire + struct.pack("!HH", question.rdtype, question.rdclass)
        query = PlainQuery(
            data, message.id, message.flags, question_bytes, qname_wire.lower() + question_bytes[-4:],
            message.payload if message.edns >= 0 else None, bool(message.ednsflags & dns.flags.DO),
        )
        return self._answer(query, peer, over_tcp)

    def _error(self, message: dns.message.Message, rcode: int, allowed: bool) -> bytes:
        response = dns.message.make_response(message, our_payload=self.max_udp_payload)
        response.set_rcode(rcode)
        if allowed:
            response.flags |= dns.flags.RA
        return response.to_wire(max_size=65535)
