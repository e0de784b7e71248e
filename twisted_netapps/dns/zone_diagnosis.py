"""Say which record of a zone file is wrong, on its own line, and why.

dnspython reports a bad record's data after it has read the line's end, so
the line number is often the next line's, and for most types the reason is
the generic "Text input is malformed." (``ns1 IN A 999.1.1.1`` on line 4
came out as ``:5: Text input is malformed.``). :func:`explain` takes such a
message, finds the record it is about (that line, or the one before it,
whichever does not parse on its own) and says what is wrong with its data:
``zone:4: A record '999.1.1.1': Octet 999 (> 255) not permitted in '999.1.1.1'``.

No Twisted here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.ttl
import dns.zone

_LOCATED = re.compile(r"^(?P<path>.*?):(?P<line>\d+): (?P<reason>.*)$")
GENERIC = {"Text input is malformed.", "The DNS operation timed out.", ""}
FORMS = {
    "MX": "PREFERENCE EXCHANGE (e.g. 10 mail.example.test.)",
    "SRV": "PRIORITY WEIGHT PORT TARGET (e.g. 0 5 5060 sip.example.test.)",
    "SOA": "MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM",
    "NS": "a host name",
    "CNAME": "a domain name",
    "PTR": "a domain name",
    "TXT": "one or more quoted strings",
    "CAA": 'FLAGS TAG "VALUE" (e.g. 0 issue "ca.example")',
}


def _record_fields(line: str) -> tuple[str, str] | None:
    """(TYPE, data) of a one-line record, or None if the line is not one."""
    text = line.split(";", 1)[0]
    tokens = text.split()
    if not tokens or text.lstrip().startswith("$") or "(" in text or ")" in text:
        return None
    index = 0 if text[:1].isspace() else 1  # an owner name, unless the line starts blank
    while index < len(tokens):
        token = tokens[index]
        try:
            dns.ttl.from_text(token)
        except dns.exception.DNSException:
            pass
        else:
            index += 1
            continue
        try:
            dns.rdataclass.from_text(token)
        except dns.exception.DNSException:
            break
        index += 1
    if index >= len(tokens):
        return None
    data = text.split(None, index + 1)[index + 1].strip() if len(tokens) > index + 1 else ""
    return tokens[index].upper(), data


def _parses_alone(line: str, origin: dns.name.Name) -> bool:
    owner_fix = "@" + line if line[:1].isspace() else line
    text = f"$ORIGIN {origin}\n$TTL 3600\n{owner_fix}\n"
    try:
        dns.zone.from_text(text, origin, relativize=False, check_origin=False)
    except dns.exception.DNSException:
        return False
    except ValueError:
        return False
    return True


def _reason(rdtype: str, data: str, origin: dns.name.Name) -> str:
    if rdtype in ("A", "AAAA"):
        kind = ipaddress.IPv4Address if rdtype == "A" else ipaddress.IPv6Address
        try:
            kind(data)
        except ValueError as e:
            return f"not an IPv{4 if rdtype == 'A' else 6} address ({e})"
    try:
        rdtype_value = dns.rdatatype.from_text(rdtype)
    except dns.exception.DNSException:
        return f"unknown record type {rdtype!r}"
    try:
        dns.rdata.from_text(dns.rdataclass.IN, rdtype_value, data, origin=origin)
    except dns.exception.DNSException as e:
        detail = str(e)
    except ValueError as e:
        detail = str(e)
    else:
        return ""
    detail = "" if detail in GENERIC else detail
    form = FORMS.get(rdtype)
    if form and detail:
        return f"{detail} (expected {form})"
    if form:
        return f"expected {form}"
    return detail or "malformed data"


def explain(message: str, origin: dns.name.Name) -> str:
    """A better ``file:line: reason`` for dnspython's zone syntax error *message*; *message* if none found."""
    located = _LOCATED.match(message)
    if located is None:
        return message
    path, number = located.group("path"), int(located.group("line"))
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return message
    for candidate in (number - 1, number):
        if not 1 <= candidate <= len(lines):
            continue
        line = lines[candidate - 1]
        fields = _record_fields(line)
        if fields is None or _parses_alone(line, origin):
            continue
        if candidate == number and located.group("reason") not in GENERIC:
            return message  # the right line and a telling reason already
        rdtype, data = fields
        reason = _reason(rdtype, data, origin)
        if not reason:  # the data is fine alone: the line's other fields are the problem
            return f"{path}:{candidate}: {located.group('reason')}"
        return f"{path}:{candidate}: {rdtype} record {data!r}: {reason}"
    return message
