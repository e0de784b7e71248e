"""Root hints: where iterative resolution starts when nothing is cached.

The file is the classic ``named.root`` master-file fragment (NS records for
the root plus the servers' A/AAAA records), parsed with dnspython. The real
root servers' file ships as ``data/named.root``; ``data/demo.hints`` points at
the offline demo hierarchy. No Twisted imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zonefile

from twisted_netapps.errors import ConfigError

MAX_HINTS_BYTES = 1 << 20


@dataclass(frozen=True)
class RootHints:
    """The root's name servers and their addresses (hints are trusted)."""

    servers: tuple[dns.name.Name, ...]
    addresses: dict[dns.name.Name, tuple[str, ...]]

    def all_addresses(self, ipv6: bool = False) -> list[str]:
        out = []
        for server in self.servers:
            for address in self.addresses.get(server, ()):
                if ipv6 or ":" not in address:
                    out.append(address)
        return out


def parse_hints(text: str, source: str = "<hints>") -> RootHints:
    """Parse hints *text*; ConfigError (naming *source*) if unusable."""
    try:
        rrsets = dns.zonefile.read_rrsets(text, origin=dns.name.root, relativize=False)
    except dns.exception.DNSException as e:
        raise ConfigError(f"{source}: bad root hints: {e}") from None
    servers: list[dns.name.Name] = []
    addresses: dict[dns.name.Name, list[str]] = {}
    for rrset in rrsets:
        if rrset.rdtype == dns.rdatatype.NS and rrset.name == dns.name.root:
            servers.extend(rdata.target for rdata in rrset)
        elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            addresses.setdefault(rrset.name, []).extend(rdata.address for rdata in rrset)
    servers = [s for s in dict.fromkeys(servers) if addresses.get(s)]
    if not servers:
        raise ConfigError(f"{source}: root hints name no root server with an address")
    return RootHints(tuple(servers), {s: tuple(addresses[s]) for s in servers})


def load_hints(path: Path) -> RootHints:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_HINTS_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read root hints: {e.strerror or e}") from None
    if len(text) > MAX_HINTS_BYTES:
        raise ConfigError(f"{path}: root hints file larger than {MAX_HINTS_BYTES} bytes")
    return parse_hints(text, str(path))
