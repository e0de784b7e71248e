"""Where mail for a domain goes: MX lookup (RFC 5321 5.1) with dnspython.

Blocking (dnspython's resolver): the queue runner calls :func:`lookup_hosts`
in the reactor's thread pool. MX hosts come in preference order (equal
preferences shuffled), each with its A/AAAA addresses; without MX records
the domain itself is the implicit MX; a null MX (RFC 7505) or a domain that
does not exist is a permanent failure, everything else (timeouts, SERVFAIL)
temporary.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.exception
import dns.inet
import dns.resolver


class MXLookupError(Exception):
    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class MailHost:
    name: str
    preference: int
    addresses: tuple[str, ...]


def parse_nameserver(text: str) -> tuple[str, int] | None:
    """``"127.0.0.1:5301"`` / ``"[::1]:53"`` / ``"127.0.0.1"`` -> (ip, port); ``""`` -> None (system)."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host, port = text, 53
    ipaddress.ip_address(host)  # ValueError for a name: the resolver must be an address
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def make_resolver(nameserver: tuple[str, int] | None, timeout: float) -> dns.resolver.Resolver:
    if nameserver is None:
        resolver = dns.resolver.Resolver(configure=True)
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    return resolver


def _addresses(resolver: dns.resolver.Resolver, name: str) -> tuple[str, ...]:
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.address for r in resolver.resolve(name, rdtype, search=False)]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except (dns.resolver.NoNameservers, dns.exception.Timeout):
            if not found:
                raise
    return tuple(found)


def lookup_hosts(domain: str, resolver: dns.resolver.Resolver) -> list[MailHost]:
    """Mail hosts for *domain*, best first; raises :class:`MXLookupError`."""
    if domain.startswith("[") and domain.endswith("]"):  # address literal
        literal = domain[1:-1]
        literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
        if not dns.inet.is_address(literal):
            raise MXLookupError(f"bad address literal {domain}", permanent=True)
        return [MailHost(literal, 0, (literal,))]
    try:
        try:
            answer = resolver.resolve(domain, "MX", search=False)
            records = [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer]
        except dns.resolver.NoAnswer:
            records = [(0, domain)]  # implicit MX
        if len(records) == 1 and records[0][1] in ("", "."):
            raise MXLookupError(f"{domain} accepts no mail (null MX)", permanent=True)
        random.shuffle(records)
        records.sort(key=lambda r: r[0])
        hosts = []
        for preference, name in records:
            try:
                addresses = _addresses(resolver, name)
            except (dns.resolver.NoNameservers, dns.exception.Timeout):
                continue
            if addresses:
                hosts.append(MailHost(name, preference, addresses))
    except dns.resolver.NXDOMAIN:
        raise MXLookupError(f"domain {domain} does not exist", permanent=True) from None
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
        raise MXLookupError(f"DNS lookup for {domain} failed: {e}", permanent=False) from None
    except dns.exception.DNSException as e:
        raise MXLookupError(f"DNS lookup for {domain} failed: {e}", permanent=False) from None
    if not hosts:
        raise MXLookupError(f"no address for any mail host of {domain}", permanent=False)
    return hosts
