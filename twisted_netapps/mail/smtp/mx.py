"""Where mail for a domain goes: MX lookup (RFC 5321 5.1), on the reactor.

No threads and no blocking resolver: :class:`MXResolver` runs the
``resolver`` package's own core (:class:`~twisted_netapps.resolver.iterate.Resolution`
in forwarding mode, driven by :class:`~twisted_netapps.resolver.upstream.ResolutionRunner`)
against the configured DNS server, or the system's ``/etc/resolv.conf``
name servers: UDP from a fresh random port per query, TCP when an answer is
truncated, a timeout per server, and one deadline for the whole lookup (the
MX query, then the A and AAAA queries of every mail host at once). A slow or
dead DNS server therefore costs the queue runner that deadline and nothing
else: no thread pool is held while waiting.

MX hosts come in preference order (equal preferences shuffled), each with
its A/AAAA addresses; without MX records the domain itself is the implicit
MX; a null MX (RFC 7505) or a domain that does not exist is a permanent
failure, everything else (timeouts, SERVFAIL) temporary.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.exception
import dns.inet
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
from twisted.internet import defer
from twisted.logger import Logger

from twisted_netapps.resolver.cache import ResolverCache
from twisted_netapps.resolver.hints import RootHints
from twisted_netapps.resolver.iterate import Limits, Resolution, Result
from twisted_netapps.resolver.upstream import ResolutionRunner

log = Logger(namespace="netapps.smtp")

MX = dns.rdatatype.MX
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
NO_HINTS = RootHints((), {})  # forwarding mode never walks from the root
ATTEMPTS = 2  # each server is asked twice before a query fails (resolv.conf's default)


class MXLookupError(Exception):
    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class MailHost:
    name: str
    preference: int
    addresses: tuple[str, ...]


def system_nameservers() -> list[tuple[str, int]]:
    """The name servers of ``/etc/resolv.conf`` (read once, with dnspython's parser); [] if none."""
    try:
        system = dns.resolver.Resolver(configure=True)
    except (dns.resolver.NoResolverConfiguration, OSError) as e:
        log.warn("smtp: no system DNS servers ({error}): MX lookups will fail until smtp.resolver is set",
                 error=e)
        return []
    servers = []
    for server in system.nameservers:
        address = str(server)
        try:
            ipaddress.ip_address(address)
        except ValueError:  # a DoH/DoT URL: not something we speak
            continue
        servers.append((address, system.port))
    return servers


class MXResolver:
    """Looks up mail hosts on the reactor; :meth:`lookup_hosts` gives a Deferred.

    *nameservers*: (address, port) pairs asked in order, :data:`ATTEMPTS`
    rounds (RD set: they must be recursive resolvers). *timeout*: seconds
    for a whole lookup; *server_timeout*: seconds before the next server (or
    round) is tried.
    """

    def __init__(self, reactor, nameservers: list[tuple[str, int]], *, timeout: float,
                 server_timeout: float = 2.0, stats=None, rng: random.Random | None = None) -> None:
        self.reactor = reactor
        self.nameservers = list(nameservers)
        self.timeout = timeout
        self.server_timeout = server_timeout
        self.stats = stats
        self.rng = rng

    def lookup_hosts(self, domain: str) -> defer.Deferred:
        """Deferred[list[MailHost]] for *domain*, best first; fails with :class:`MXLookupError`."""
        return defer.ensureDeferred(self._lookup_hosts(domain))

    async def _lookup_hosts(self, domain: str) -> list[MailHost]:
        if domain.startswith("[") and domain.endswith("]"):  # address literal
            literal = domain[1:-1]
            literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
            if not dns.inet.is_address(literal):
                raise MXLookupError(f"bad address literal {domain}", permanent=True)
            return [MailHost(literal, 0, (literal,))]
        if not self.nameservers:
            raise MXLookupError(f"DNS lookup for {domain} failed: no DNS server configured", permanent=False)
        try:
            name = dns.name.from_text(domain)
        except dns.exception.DNSException as e:
            raise MXLookupError(f"bad domain {domain}: {e}", permanent=True) from None
        deadline = self.reactor.seconds() + self.timeout
        # One cache per lookup: CNAME chains and the MX targets' answers are
        # shared inside it, and nothing is kept between lookups (the DNS
        # server configured is the cache, as with the system resolver).
        cache = ResolverCache(self.reactor.seconds, max_entries=256, max_answers=16)
        result = await self._resolve(name, MX, deadline, cache)
        if result.rcode == dns.rcode.NXDOMAIN:
            raise MXLookupError(f"domain {domain} does not exist", permanent=True)
        if result.rcode != dns.rcode.NOERROR:
            raise MXLookupError(f"DNS lookup for {domain} failed: {result.reason or dns.rcode.to_text(result.rcode)}",
                                permanent=False)
        records = [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in _finals(result, MX)]
        if not records:
            records = [(0, domain)]  # implicit MX
        if len(records) == 1 and records[0][1] in ("", "."):
            raise MXLookupError(f"{domain} accepts no mail (null MX)", permanent=True)
        random.shuffle(records)
        records.sort(key=lambda r: r[0])
        addresses = await defer.gatherResults(
            [defer.ensureDeferred(self._addresses(host, deadline, cache)) for _, host in records],
            consumeErrors=True,
        )
        hosts = [MailHost(host, preference, found)
                 for (preference, host), found in zip(records, addresses) if found]
        if not hosts:
            raise MXLookupError(f"no address for any mail host of {domain}", permanent=False)
        return hosts

    async def _addresses(self, host: str, deadline: float, cache: ResolverCache) -> tuple[str, ...]:
        """The A and AAAA addresses of *host* (asked at once); () if it has none or they failed."""
        try:
            name = dns.name.from_text(host)
        except dns.exception.DNSException:
            return ()
        results = await defer.gatherResults([
            defer.ensureDeferred(self._resolve(name, rdtype, deadline, cache)) for rdtype in (A, AAAA)
        ], consumeErrors=True)
        return tuple(r.address for result, rdtype in zip(results, (A, AAAA)) for r in _finals(result, rdtype))

    async def _resolve(self, name: dns.name.Name, rdtype: int, deadline: float, cache: ResolverCache) -> Result:
        remaining = deadline - self.reactor.seconds()
        if remaining <= 0:
            return Result(name, rdtype, dns.rcode.SERVFAIL, [], [], f"lookup deadline of {self.timeout}s passed")
        resolution = Resolution(
            name, rdtype, cache=cache, hints=NO_HINTS, clock=self.reactor.seconds,
            limits=Limits(time_budget=remaining, server_timeout=min(self.server_timeout, remaining)),
            forwarders=self.nameservers * ATTEMPTS, rng=self.rng,
        )
        return await ResolutionRunner(resolution, self.reactor, self.stats).run()


def _finals(result: Result, rdtype: int) -> list:
    """The records of type *rdtype* that answer *result* (at the end of its CNAME chain)."""
    if result.rcode != dns.rcode.NOERROR:
        return []
    return [rdata for rrset in result.answer if rrset.rdtype == rdtype for rdata in rrset]
