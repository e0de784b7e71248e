"""Iterative resolution as a sans-I/O state machine (RFC 1034 section 5.3.3).

One :class:`Resolution` answers one question. It never touches a socket: it
says which query to send where (:class:`SendQuery`) and is told what came
back (:meth:`Resolution.receive`), that nothing came in time
(:meth:`Resolution.timed_out`) or that the server is unreachable
(:meth:`Resolution.unreachable`); after each event it gives the next
:class:`SendQuery` or :class:`Done` with the final :class:`Result`.

Inside, the algorithm is a generator (``yield SendQuery`` -> outcome), which
keeps sub-resolutions (addresses of out-of-bailiwick name servers, CNAME
targets in other zones) as plain nested calls. What it does:

- starts from the closest zone cut in the cache, else the root hints, and
  follows referrals, which must go strictly down towards the name (so
  referral loops cannot happen); upward/sideways referrals are lame;
- tries the zone's other name server addresses on timeout, unreachable,
  REFUSED/SERVFAIL/FORMERR/NOTIMP or a lame answer; retries over TCP when TC
  is set; retries without EDNS once if a server rejects it;
- bailiwick: from a server asked about zone Z only records at or below Z
  are used; answer records only along the CNAME chain from the question;
  glue only for the delegation's own NS names; SOA only if it is an
  ancestor of the name;
- replies are accepted only from the address and port queried, with the ID
  and question sent; anything else is ignored (the query keeps waiting);
- bounded: CNAME chain (8), sub-resolution depth, referrals, upstream
  queries, and a time budget for the whole resolution; exceeding any of
  them is SERVFAIL, as is a chain with no working server.

In forwarding mode the same machine sends RD queries to the forwarders and
keeps their answers; a forwarder's SERVFAIL stays SERVFAIL.

No Twisted imports here: time comes from an injected clock, randomness from
an injected ``random.Random`` (``SystemRandom`` by default).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Generator

import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from twisted_netapps.resolver.cache import RANK_ANSWER, RANK_GLUE, RANK_REFERRAL, ResolverCache
from twisted_netapps.resolver.hints import RootHints
from twisted_netapps.dnswire import build_query, is_truncated, rcode_of
from twisted_netapps.resolver.prepared import answer_section
from twisted_netapps.resolver.reply import Reply, SentQuestion, decode_reply, sent_question, trim_reply

NS = dns.rdatatype.NS
SOA = dns.rdatatype.SOA
CNAME = dns.rdatatype.CNAME
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
ANY = dns.rdatatype.ANY
DS = dns.rdatatype.DS


@dataclass(frozen=True)
class Limits:
    max_cname: int = 8
    max_depth: int = 4  # nested sub-resolutions (NS addresses, and theirs)
    max_referrals: int = 24
    max_queries: int = 64  # upstream queries per client question
    time_budget: float = 10.0  # seconds for the whole resolution
    server_timeout: float = 1.5  # seconds to wait for one server over UDP
    edns_payload: int = 1232
    ipv6: bool = False  # also use AAAA addresses of name servers


@dataclass(frozen=True)
class SendQuery:
    """Send *wire* to (server, port) and report the outcome within *timeout* s."""

    server: str
    port: int
    wire: bytes
    over_tcp: bool
    timeout: float


@dataclass(frozen=True)
class Result:
    qname: dns.name.Name
    qtype: int
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    reason: str = ""  # why SERVFAIL
    # The answer section exactly as one upstream reply carried it, when the
    # answer is all and only that section (the handler serves it as is
    # instead of encoding the RRsets again; see prepared.answer_section).
    answer_wire: bytes | None = None


@dataclass(frozen=True)
class Done:
    result: Result


@dataclass(frozen=True)
class TraceStep:
    """One upstream exchange, for logs and ``netapps dns trace``."""

    depth: int
    zone: dns.name.Name
    server: str
    port: int
    qname: dns.name.Name
    qtype: int
    over_tcp: bool
    outcome: str  # referral, answer, cname, nxdomain, nodata, lame, timeout, unreachable, truncated, ...
    detail: str
    rtt: float


class ResolutionFailed(Exception):
    """The chain is broken; *fatal* ones (budget) end the whole resolution."""

    def __init__(self, reason: str, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


@dataclass(frozen=True)
class _Reply:
    message: Reply
    wire: bytes
    partial: bool  # only the answer section was decoded (see reply.trim_reply)
    sent: SentQuestion | None = None

    def complete(self) -> Reply:
        """The whole reply decoded (decoding it now if only the answers were)."""
        return decode_reply(self.wire, self.sent) if self.partial else self.message


@dataclass(frozen=True)
class _NoReply:
    outcome: str  # timeout, unreachable, malformed, truncated
    detail: str = ""


@dataclass(frozen=True)
class _Step:
    """What one zone (or the cache) said about a name."""

    kind: str  # answer, cname, nxdomain, nodata
    records: list[dns.rrset.RRset]
    soa: dns.rrset.RRset | None = None
    target: dns.name.Name | None = None  # kind == "cname": continue here
    section: bytes | None = None  # kind == "answer" from one reply: its answer section, if servable


@dataclass(frozen=True)
class _Referral:
    child: dns.name.Name
    ns: dns.rrset.RRset
    glue: list[dns.rrset.RRset]


@dataclass(frozen=True)
class _Lame:
    reason: str


@dataclass
class _Pending:
    id: int
    server: str
    port: int
    qname: dns.name.Name
    qtype: int
    over_tcp: bool
    sent_at: float
    sent: SentQuestion


@dataclass
class _Chain:
    cnames: list[dns.rrset.RRset] = field(default_factory=list)
    finals: list[dns.rrset.RRset] = field(default_factory=list)
    name: dns.name.Name = dns.name.root


class Resolution:
    """Resolve (qname, qtype) iteratively, or through *forwarders*."""

    def __init__(
        self,
        qname: dns.name.Name,
        qtype: int,
        *,
        cache: ResolverCache,
        hints: RootHints,
        clock: Callable[[], float],
        limits: Limits = Limits(),
        upstream_port: int = 53,
        forwarders: list[tuple[str, int]] | None = None,
        rng: random.Random | None = None,
        details: bool = False,
    ) -> None:
        self.qname = qname
        self.details = details  # describe each step's records in the trace (for `netapps dns trace`)
        self.qtype = qtype
        self.cache = cache
        self.hints = hints
        self.clock = clock
        self.limits = limits
        self.upstream_port = upstream_port
        self.forwarders = list(forwarders or [])
        self.rng = rng or random.SystemRandom()
        self.steps: list[TraceStep] = []
        self.queries_sent = 0
        self.started_at = clock()
        self.deadline = self.started_at + limits.time_budget
        self._pending: _Pending | None = None
        self._in_progress: set[tuple[dns.name.Name, int]] = set()
        self._gen = self._run()

    # -- events ------------------------------------------------------------
    def start(self) -> SendQuery | Done:
        return self._advance(None)

    def receive(self, wire: bytes, source: tuple[str, int]) -> SendQuery | Done | None:
        """A datagram/TCP message from *source*; None means "not ours, keep waiting"."""
        pending = self._pending
        if pending is None or (source[0], source[1]) != (pending.server, pending.port):
            return None
        if len(wire) < 12 or int.from_bytes(wire[:2], "big") != pending.id:
            return None
        trimmed, answers_only = trim_reply(wire)
        try:
            message = decode_reply(trimmed, pending.sent)
        except (dns.exception.DNSException, ValueError) as e:
            if is_truncated(wire):  # TC set and cut mid-record: retry over TCP
                return self._advance(_NoReply("truncated", "truncated reply"))
            return self._advance(_NoReply("malformed", f"malformed reply: {e}"))
        if not message.flags & dns.flags.QR or len(message.question) != 1:
            return None
        question = message.question[0]
        if question.name is not pending.qname and (  # (``is``: our own question echoed byte for byte)
            question.name != pending.qname or question.rdtype != pending.qtype
            or question.rdclass != dns.rdataclass.IN
        ):
            return None
        return self._advance(_Reply(message, wire, answers_only, pending.sent))

    def timed_out(self) -> SendQuery | Done:
        return self._advance(_NoReply("timeout"))

    def unreachable(self, reason: str) -> SendQuery | Done:
        return self._advance(_NoReply("unreachable", reason))

    def _advance(self, outcome) -> SendQuery | Done:
        self._pending = None
        try:
            return self._gen.send(outcome)
        except StopIteration as stop:
            return Done(stop.value)

    # -- the algorithm -----------------------------------------------------
    def _run(self) -> Generator[SendQuery, object, Result]:
        yield from ()  # make this a generator even when the cache answers
        try:
            return (yield from self._resolve(self.qname, self.qtype, 0))
        except ResolutionFailed as e:
            return Result(self.qname, self.qtype, dns.rcode.SERVFAIL, [], [], e.reason)

    def _resolve(self, qname: dns.name.Name, qtype: int, depth: int):
        records: list[dns.rrset.RRset] = []
        name = qname
        seen = {name}
        cnames = 0
        answer_wire = None
        while True:
            step = self._from_cache(name, qtype)
            if step is None:
                if self.forwarders:
                    step = yield from self._forward(name, qtype)
                else:
                    step = yield from self._iterate(name, qtype, depth)
            clamped = [self._clamped(rrset) for rrset in step.records]
            if not records and step.section is not None and all(a is b for a, b in zip(clamped, step.records)):
                answer_wire = step.section  # the whole answer, from one reply, TTLs untouched
            records.extend(clamped)
            cnames += sum(1 for rrset in step.records if rrset.rdtype == CNAME and qtype != CNAME)
            if cnames > self.limits.max_cname:
                raise ResolutionFailed(f"CNAME chain from {qname} longer than {self.limits.max_cname}")
            if step.kind == "cname":
                name = step.target
                if name in seen:
                    raise ResolutionFailed(f"CNAME loop at {name}")
                seen.add(name)
                continue
            rcode = dns.rcode.NXDOMAIN if step.kind == "nxdomain" else dns.rcode.NOERROR
            authority = [self._negative_soa(step.soa)] if step.soa is not None and step.kind != "answer" else []
            return Result(qname, qtype, rcode, records, authority,
                          answer_wire=answer_wire if step.kind == "answer" else None)

    def _from_cache(self, name: dns.name.Name, qtype: int) -> _Step | None:
        negative = self.cache.get_negative(name, qtype)
        if negative is not None:
            nxdomain, soa = negative
            return _Step("nxdomain" if nxdomain else "nodata", [], soa)
        if qtype == ANY:
            return None
        rrset = self.cache.get_rrset(name, qtype, RANK_ANSWER)
        if rrset is not None:
            return _Step("answer", [rrset])
        if qtype != CNAME:
            cname = self.cache.get_rrset(name, CNAME, RANK_ANSWER)
            if cname is not None:
                return _Step("cname", [cname], target=cname[0].target)
        return None

    def _iterate(self, qname: dns.name.Name, qtype: int, depth: int):
        # DS records live on the parent side of a zone cut (RFC 4035 3.1.4.1):
        # start above the name so the parent, not the child, is asked.
        start = qname.parent() if qtype == DS and qname != dns.name.root else qname
        ns = self.cache.closest_delegation(start)
        referrals = 0
        while True:
            zone = ns.name if ns is not None else dns.name.root
            servers = [rdata.target for rdata in ns] if ns is not None else list(self.hints.servers)
            outcome = yield from self._ask_zone(zone, servers, ns is None, qname, qtype, depth)
            if isinstance(outcome, _Referral):
                referrals += 1
                if referrals > self.limits.max_referrals:
                    raise ResolutionFailed(f"more than {self.limits.max_referrals} referrals for {qname}")
                ns = outcome.ns
                continue
            return outcome

    def _ask_zone(self, zone, servers, from_hints: bool, qname, qtype, depth):
        # (name, addresses) pairs, not a dict keyed by Name: dnspython hashes
        # a name label by label in Python, and this runs once per step.
        servers = [(n, self._addresses_of(n, from_hints)) for n in servers]
        self.rng.shuffle(servers)
        penalty = self.cache.server_penalty
        servers.sort(key=lambda pair: min(map(penalty, pair[1]), default=0))
        known = [pair for pair in servers if pair[1]]
        unknown = [pair for pair in servers if not pair[1]]
        tried: set[str] = set()
        problems: list[str] = []
        for ns_name, addresses in known + unknown:
            # (a sub-resolution for an earlier name may have cached this one's address)
            addresses = addresses or self._addresses_of(ns_name, from_hints)
            if not addresses:
                addresses = yield from self._resolve_server(ns_name, zone, depth, problems)
            self.rng.shuffle(addresses)
            addresses.sort(key=self.cache.server_penalty)  # servers that failed lately go last
            for address in addresses:
                if address in tried:
                    continue
                tried.add(address)
                reply = yield from self._exchange(address, self.upstream_port, zone, qname, qtype, depth, recursion=False)
                if reply is None:
                    self.cache.server_failed(address)
                    problems.append(f"{address}: no usable reply")
                    continue
                outcome = self._classify(reply, zone, qname, qtype)
                self._note_outcome(outcome)
                if isinstance(outcome, _Lame):
                    self.cache.server_failed(address)
                    problems.append(f"{address}: {outcome.reason}")
                    continue
                self.cache.server_answered(address)
                self._store(outcome, qname, qtype)
                return outcome
        detail = "; ".join(problems[-4:]) or "no name server addresses"
        raise ResolutionFailed(f"no server for zone {zone} gave an answer for {qname} ({detail})")

    def _resolve_server(self, ns_name, zone, depth, problems):
        """Addresses of a name server without glue: a sub-resolution."""
        if ns_name.is_subdomain(zone):
            problems.append(f"{ns_name}: in-bailiwick name server without glue")
            return []
        if depth >= self.limits.max_depth:
            problems.append(f"{ns_name}: sub-resolution depth limit")
            return []
        key = (ns_name, A)
        if key in self._in_progress:
            problems.append(f"{ns_name}: depends on itself")
            return []
        self._in_progress.add(key)
        try:
            result = yield from self._resolve(ns_name, A, depth + 1)
        except ResolutionFailed as e:
            if e.fatal:
                raise
            problems.append(f"{ns_name}: {e.reason}")
            return []
        finally:
            self._in_progress.discard(key)
        return [rdata.address for rrset in result.answer if rrset.rdtype == A and rrset.name == _chain_end(result.qname, result.answer) for rdata in rrset]

    def _addresses_of(self, name: dns.name.Name, from_hints: bool) -> list[str]:
        addresses = self.cache.addresses(name, self.limits.ipv6)
        if not addresses and from_hints:
            addresses = [a for a in self.hints.addresses.get(name, ()) if self.limits.ipv6 or ":" not in a]
        return addresses

    def _forward(self, qname: dns.name.Name, qtype: int):
        problems = []
        for server, port in self.forwarders:
            reply = yield from self._exchange(server, port, dns.name.root, qname, qtype, 0, recursion=True)
            if reply is None:
                problems.append(f"{server}:{port}: no usable reply")
                continue
            response = reply.complete()
            rcode = response.rcode()
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                # A forwarder's SERVFAIL is not an NXDOMAIN: try the next, then SERVFAIL.
                problems.append(f"{server}:{port}: {dns.rcode.to_text(rcode)}")
                self._note("lame", dns.rcode.to_text(rcode))
                continue
            chain = self._chain(response.answer, qname, qtype, dns.name.root)
            soa = self._soa(response, dns.name.root, chain.name)
            if chain.finals:
                step = _Step("answer", chain.cnames + chain.finals)
            elif rcode == dns.rcode.NXDOMAIN:
                step = _Step("nxdomain", chain.cnames, soa)
            else:
                # The forwarder followed the chain already: no data at its end.
                step = _Step("nodata", chain.cnames, soa)
            self._note(step.kind, _describe_step(step) if self.details else "")
            self._store_step(step, chain.name, qtype)
            return step
        raise ResolutionFailed(f"no forwarder answered {qname} ({'; '.join(problems[-4:])})")

    # -- one exchange ------------------------------------------------------
    def _exchange(self, server, port, zone, qname, qtype, depth, *, recursion: bool):
        """Send one question to one server (TC -> TCP, EDNS fallback); the reply or None."""
        over_tcp = False
        edns = True
        for _attempt in range(3):
            now = self.clock()
            if now >= self.deadline:
                raise ResolutionFailed(f"time budget of {self.limits.time_budget}s exhausted", fatal=True)
            if self.queries_sent >= self.limits.max_queries:
                raise ResolutionFailed(f"more than {self.limits.max_queries} upstream queries", fatal=True)
            qid = self.rng.getrandbits(16)
            wire = build_query(qid, qname, qtype, recursion=recursion,
                               edns_payload=self.limits.edns_payload if edns else None)
            self.queries_sent += 1
            timeout = self.limits.server_timeout * (2 if over_tcp else 1)
            sent = sent_question(qname, qtype, dns.rdataclass.IN, wire)
            self._pending = _Pending(qid, server, port, qname, qtype, over_tcp, now, sent)
            self._current = (depth, zone, server, port, qname, qtype, over_tcp, now)
            outcome = yield SendQuery(server, port, wire, over_tcp, max(0.001, min(timeout, self.deadline - now)))
            if isinstance(outcome, _NoReply):
                if outcome.outcome == "truncated" and not over_tcp:
                    self._note("truncated", "TC set, retrying over TCP")
                    over_tcp = True
                    continue
                self._note(outcome.outcome, outcome.detail)
                return None
            response = outcome.message
            if response.flags & dns.flags.TC and not over_tcp:
                self._note("truncated", "TC set, retrying over TCP")
                over_tcp = True
                continue
            if edns and response.edns < 0 and response.rcode() in (dns.rcode.FORMERR, dns.rcode.NOTIMP):
                self._note("lame", f"{dns.rcode.to_text(response.rcode())} to EDNS, retrying without")
                edns = False
                continue
            return outcome
        return None

    # -- reading a reply ---------------------------------------------------
    def _classify(self, reply: _Reply, zone, qname, qtype):
        if reply.partial:
            # Only the answer section was decoded: enough if it holds the
            # final answer, else decode the whole reply and look again.
            chain = self._chain(reply.message.answer, qname, qtype, zone)
            if chain.finals:
                return _answer_step(reply, chain.cnames + chain.finals)
        response = reply.complete()
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return _Lame(dns.rcode.to_text(rcode))
        authoritative = bool(response.flags & dns.flags.AA)
        chain = self._chain(response.answer, qname, qtype, zone)
        if chain.finals or chain.cnames:
            if not authoritative:
                return _Lame("answer without AA from a server asked as authoritative")
            if chain.finals:
                return _answer_step(reply, chain.cnames + chain.finals)
            soa = self._soa(response, zone, chain.name)
            if rcode == dns.rcode.NXDOMAIN and chain.name.is_subdomain(zone):
                return _Step("nxdomain", chain.cnames, soa)
            if soa is not None and not _ns_for(response, chain.name, zone):
                return _Step("nodata", chain.cnames, soa)
            return _Step("cname", chain.cnames, target=chain.name)
        soa = self._soa(response, zone, qname)
        if rcode == dns.rcode.NXDOMAIN:
            if not authoritative:
                return _Lame("NXDOMAIN without AA")
            return _Step("nxdomain", [], soa)
        if authoritative:
            return _Step("nodata", [], soa)
        referral = _ns_for(response, qname, zone)
        if referral is None:
            if any(rrset.rdtype == NS for rrset in response.authority):
                return _Lame(f"referral that does not lead below {zone} towards {qname}")
            return _Lame("no answer, referral or SOA")
        targets = {rdata.target for rdata in referral}
        glue = [
            rrset for rrset in response.additional
            if rrset.rdtype in (A, AAAA) and rrset.name in targets and rrset.name.is_subdomain(zone)
        ]
        return _Referral(referral.name, referral, glue)

    def _chain(self, answer, qname, qtype, zone) -> _Chain:
        """The CNAME chain from *qname* and its final RRsets, in-bailiwick records only."""
        if not answer:  # a referral or a negative answer: nothing to follow
            return _Chain(name=qname)
        by_key = {}
        for rrset in answer:
            if rrset.name.is_subdomain(zone) and rrset.rdclass == dns.rdataclass.IN:
                by_key.setdefault((rrset.name, rrset.rdtype), rrset)
        chain = _Chain(name=qname)
        seen = {qname}
        for _ in range(self.limits.max_cname + 1):
            name = chain.name
            if qtype == ANY:
                chain.finals = [rrset for (owner, _t), rrset in by_key.items() if owner == name]
            else:
                final = by_key.get((name, qtype))
                chain.finals = [final] if final is not None else []
            if chain.finals or qtype in (CNAME, ANY):
                return chain
            cname = by_key.get((name, CNAME))
            if cname is None:
                return chain
            chain.cnames.append(cname)
            chain.name = cname[0].target
            if chain.name in seen:
                raise ResolutionFailed(f"CNAME loop at {chain.name}")
            seen.add(chain.name)
        return chain

    def _soa(self, response, zone, name) -> dns.rrset.RRset | None:
        for rrset in response.authority:
            if (
                rrset.rdtype == SOA and len(rrset)
                and rrset.name.is_subdomain(zone) and name.is_subdomain(rrset.name)
            ):
                return rrset
        return None

    # -- cache -------------------------------------------------------------
    def _store(self, outcome, qname, qtype) -> None:
        if isinstance(outcome, _Referral):
            self.cache.put_rrset(outcome.ns, RANK_REFERRAL)
            for rrset in outcome.glue:
                self.cache.put_rrset(rrset, RANK_GLUE)
            return
        self._store_step(outcome, _chain_end(qname, outcome.records), qtype)

    def _store_step(self, step: _Step, last_name, qtype) -> None:
        for rrset in step.records:
            self.cache.put_rrset(rrset, RANK_ANSWER)
        if step.soa is not None:
            if step.kind == "nxdomain":
                self.cache.put_negative(last_name, None, step.soa)
            elif step.kind == "nodata":
                self.cache.put_negative(last_name, qtype, step.soa)

    def _clamped(self, rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        ttl = self.cache.clamp(rrset.ttl)
        if ttl == rrset.ttl:
            return rrset
        copy = rrset.copy()
        copy.ttl = ttl
        return copy

    def _negative_soa(self, soa: dns.rrset.RRset) -> dns.rrset.RRset:
        """The SOA as sent to clients: TTL = the negative-caching TTL (RFC 2308 section 3)."""
        copy = soa.copy()
        copy.ttl = self.cache.negative_ttl(soa)
        return copy

    # -- trace -------------------------------------------------------------
    def _note_outcome(self, outcome) -> None:
        if not self.details:
            self._note(outcome.kind if isinstance(outcome, _Step) else
                       "referral" if isinstance(outcome, _Referral) else "lame",
                       outcome.reason if isinstance(outcome, _Lame) else "")
            return
        if isinstance(outcome, _Referral):
            servers = ", ".join(str(rdata.target) for rdata in outcome.ns)
            glue = sum(len(rrset) for rrset in outcome.glue)
            self._note("referral", f"to {outcome.child} ({servers}; {glue} glue)")
        elif isinstance(outcome, _Lame):
            self._note("lame", outcome.reason)
        else:
            self._note(outcome.kind, _describe_step(outcome))

    def _note(self, outcome: str, detail: str) -> None:
        depth, zone, server, port, qname, qtype, over_tcp, sent_at = self._current
        self.steps.append(
            TraceStep(depth, zone, server, port, qname, qtype, over_tcp, outcome, detail, self.clock() - sent_at)
        )


def _answer_step(reply: _Reply, records: list[dns.rrset.RRset]) -> _Step:
    """An answer from *reply*; with its answer section if that is exactly *records*.

    Only a single RRset (no CNAME chain) is served as received: a chain
    must reach clients in chain order, which the upstream's order need not be.
    """
    count = sum(len(rrset) for rrset in records)
    data, sent = reply.wire, reply.sent
    section = None
    if (
        len(records) == 1 and sent is not None and rcode_of(data) == dns.rcode.NOERROR
        and int.from_bytes(data[6:8], "big") == count
        and data[12:12 + len(sent.wire)].lower() == sent.wire.lower()
    ):
        section = answer_section(data, len(sent.wire), count)
    return _Step("answer", records, section=section)


def _ns_for(response, name, zone) -> dns.rrset.RRset | None:
    """The authority NS RRset of a zone cut strictly below *zone* and at or above *name*."""
    for rrset in response.authority:
        if (
            rrset.rdtype == NS and len(rrset) and rrset.name != zone
            and rrset.name.is_subdomain(zone) and name.is_subdomain(rrset.name)
        ):
            return rrset
    return None


def _chain_end(name: dns.name.Name, records) -> dns.name.Name:
    """Where the CNAME chain from *name* through *records* ends."""
    for rrset in records:
        if rrset.rdtype == CNAME and rrset.name == name:
            name = rrset[0].target
    return name


def _describe_step(step: _Step) -> str:
    parts = [f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {', '.join(r.to_text() for r in rrset)}" for rrset in step.records]
    if step.kind == "cname":
        parts.append(f"continue at {step.target}")
    if step.soa is not None and step.kind in ("nxdomain", "nodata"):
        parts.append(f"SOA {step.soa.name}")
    return "; ".join(parts) or "(empty)"
