"""Zone loading: BIND master files -> dnspython zones, plus the indexes answers need.

dnspython parses (``$ORIGIN``, ``$TTL``, ``$INCLUDE``, ``@``, relative names,
parentheses, TTL units, quoted strings); this module adds what a server needs
around it:

- ``$INCLUDE`` paths are resolved against the including file's directory
  (dnspython would use the process's working directory);
- every problem is one line, ``file:line: reason`` where the parser knows the
  line, raised as :class:`ZoneError`;
- the apex checks BIND makes (SOA and NS at the origin; CNAME alone at its
  name), and indexes built once per load: zone cuts, every existing name
  including empty non-terminals, the negative-answer TTL.

No Twisted here: loading is a plain function, run in a thread by the service.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import dns.zonefile

from twisted_netapps.dns.zone_diagnosis import explain

_INCLUDE = re.compile(r'^(\$INCLUDE[ \t]+)("[^"]*"|\S+)', re.IGNORECASE | re.MULTILINE)
MAX_ZONE_FILE = 64 * 1024 * 1024  # a master file bigger than this is a mistake


class ZoneError(Exception):
    """A zone file could not be loaded; ``str()`` is one line: ``file[:line]: reason``."""

    def __init__(self, message: str) -> None:
        # Names taken from the file (an $INCLUDE target, say) may hold line
        # breaks; the message must stay one line for logs and start-up errors.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


@dataclass
class LoadedZone:
    """One zone as served: the dnspython zone plus answer indexes.

    ``names`` holds every name that exists in the zone, including empty
    non-terminals (RFC 4592 2.2.2), so "no such name" (NXDOMAIN) and "name
    without that type" (NODATA) are told apart by a set lookup. ``cuts`` are
    the delegation points below the apex.
    """

    origin: dns.name.Name
    zone: dns.zone.Zone
    soa: dns.rrset.RRset  # with the negative-answer TTL, ready for authority sections
    serial: int
    names: set[dns.name.Name]
    cuts: set[dns.name.Name]
    files: dict[str, float] = field(default_factory=dict)  # path -> mtime at load

    def node(self, name: dns.name.Name):
        return self.zone.nodes.get(name)


def _stat_mtime(path: Path, where: str) -> float:
    try:
        return path.stat().st_mtime
    except OSError as e:
        raise ZoneError(f"{where}: cannot read {path}: {e.strerror}") from None


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_ZONE_FILE:
            raise ZoneError(f"{path}: zone file larger than {MAX_ZONE_FILE} bytes")
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ZoneError(f"{path}: cannot read zone file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ZoneError(f"{path}: not UTF-8 text (byte {e.start}): {e.reason}") from None


def _resolve_includes(text: str, path: Path, files: dict[str, float], depth: int = 0) -> str:
    """Rewrite relative ``$INCLUDE`` paths to absolute ones; record every file's mtime.

    Included files are opened by dnspython itself, so a relative ``$INCLUDE``
    inside one of them (which dnspython would resolve against the working
    directory) is reported rather than silently mis-resolved.
    """

    def replace(match: re.Match) -> str:
        line = text.count("\n", 0, match.start()) + 1
        where = f"{path}:{line}"
        raw = match.group(2).strip('"')
        target = Path(raw)
        if not target.is_absolute():
            if depth > 0:
                raise ZoneError(f"{where}: $INCLUDE {raw}: relative path inside an included file "
                                "(use an absolute path, or include it from the zone file)")
            target = path.parent / target
        files[str(target)] = _stat_mtime(target, f"{where}: $INCLUDE")
        if depth < 8:
            _resolve_includes(_read_text(target), target, files, depth + 1)
        return f'{match.group(1)}"{target}"'

    return _INCLUDE.sub(replace, text)


def load_zone(origin: str, path: str | os.PathLike) -> LoadedZone:
    """Load and check the master file at *path* for zone *origin*; raise ZoneError."""
    path = Path(path)
    try:
        origin_name = dns.name.from_text(origin)
    except dns.exception.DNSException as e:
        raise ZoneError(f"{path}: bad zone name {origin!r}: {e}") from None
    files = {str(path): _stat_mtime(path, str(path))}
    text = _resolve_includes(_read_text(path), path, files)
    try:
        zone = dns.zone.from_text(
            text, origin_name, relativize=False, filename=str(path), allow_include=True,
            check_origin=True,
        )
    except dns.exception.SyntaxError as e:  # "file:line: reason", often the next line and a vague reason
        raise ZoneError(explain(str(e), origin_name)) from None
    except dns.zone.NoSOA:
        raise ZoneError(f"{path}: zone {origin_name} has no SOA record at its origin") from None
    except dns.zone.NoNS:
        raise ZoneError(f"{path}: zone {origin_name} has no NS records at its origin") from None
    except dns.zonefile.CNAMEAndOtherData as e:
        raise ZoneError(f"{path}: a CNAME must be alone at its name: {e}") from None
    except dns.exception.DNSException as e:
        raise ZoneError(f"{path}: {e}") from None
    except OSError as e:  # an $INCLUDE vanished between the check and the parse
        raise ZoneError(f"{path}: cannot read {e.filename}: {e.strerror}") from None
    return index_zone(zone, files)


def index_zone(zone: dns.zone.Zone, files: dict[str, float] | None = None) -> LoadedZone:
    """Build the answer indexes for an already parsed *zone* (absolute names)."""
    origin = zone.origin
    soa_rdataset = zone.nodes[origin].get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    soa_rdata = soa_rdataset[0]
    negative_ttl = min(soa_rdataset.ttl, soa_rdata.minimum)
    soa = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.SOA)
    soa.update_ttl(negative_ttl)
    soa.add(soa_rdata)
    names: set[dns.name.Name] = set()
    cuts: set[dns.name.Name] = set()
    for name, node in zone.nodes.items():
        if name != origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is not None:
            cuts.add(name)
        # every ancestor down from the apex exists (empty non-terminals)
        while name != origin and name not in names:
            names.add(name)
            name = name.parent()
    names.add(origin)
    return LoadedZone(origin, zone, soa, soa_rdata.serial, names, cuts, files or {})


def files_changed(loaded: LoadedZone) -> bool:
    """True when any file the zone was read from changed (or vanished) since loading."""
    for path, mtime in loaded.files.items():
        try:
            if os.stat(path).st_mtime != mtime:
                return True
        except OSError:
            return True
    return False
