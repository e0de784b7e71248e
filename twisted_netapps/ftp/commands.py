"""FTP command lines: bytes -> :class:`Command`, and the arguments with a syntax of their own.

A control line is Telnet NVT text (RFC 959): Telnet commands (IAC ...) are
removed, ``IAC IAC`` stands for a 0xFF byte. Clients send ABOR behind
``IAC IP IAC DM`` (the Telnet "Synch"); those bytes never reach the command.
UTF-8 itself never contains 0xFF, so this does not touch UTF-8 names.

Arguments are decoded as UTF-8 (RFC 2640), undecodable bytes kept as
surrogates (``surrogateescape``): the same mapping ``os.fsdecode`` uses, so
any name on disk can be named by a client byte for byte.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IAC = 0xFF
# Telnet commands that take one option byte after them: WILL WONT DO DONT.
_OPTION_COMMANDS = frozenset((251, 252, 253, 254))
_VERB_RE = re.compile(rb"^[A-Za-z]{3,4}$")


class CommandError(ValueError):
    """A control line that is not a command (500) or a malformed argument (501)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper case, 3 or 4 ASCII letters
    arg: str  # everything after the first space ("" when none), spaces kept


def strip_telnet(line: bytes) -> bytes:
    """*line* without Telnet command sequences; ``IAC IAC`` becomes one 0xFF."""
    if IAC not in line:
        return line
    out = bytearray()
    i, n = 0, len(line)
    while i < n:
        byte = line[i]
        if byte != IAC:
            out.append(byte)
            i += 1
        elif i + 1 < n and line[i + 1] == IAC:
            out.append(IAC)
            i += 2
        elif i + 1 < n and line[i + 1] in _OPTION_COMMANDS:
            i += 3
        else:
            i += 2
    return bytes(out)


def parse_command(line: bytes) -> Command:
    """One control line (without its CRLF) -> :class:`Command`, or :class:`CommandError`."""
    line = strip_telnet(line)
    verb, _, arg = line.partition(b" ")
    if not _VERB_RE.match(verb):
        raise CommandError(500, "Syntax error, command unrecognized.")
    if b"\x00" in arg or b"\r" in arg:
        raise CommandError(501, "Syntax error in parameters (NUL or CR).")
    return Command(verb.decode("ascii").upper(), arg.decode("utf-8", "surrogateescape"))


def parse_port(arg: str) -> tuple[str, int]:
    """PORT ``h1,h2,h3,h4,p1,p2`` -> (IPv4 address, port)."""
    parts = arg.strip().split(",")
    if len(parts) != 6 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        raise CommandError(501, "Syntax error in PORT: expected h1,h2,h3,h4,p1,p2.")
    numbers = [int(p) for p in parts]
    if any(n > 255 for n in numbers):
        raise CommandError(501, "Syntax error in PORT: numbers are 0-255.")
    port = numbers[4] * 256 + numbers[5]
    if port == 0:
        raise CommandError(501, "Syntax error in PORT: port 0.")
    return ".".join(map(str, numbers[:4])), port


def parse_eprt(arg: str) -> tuple[int, str, int]:
    """EPRT ``<d>proto<d>address<d>port<d>`` (RFC 2428) -> (1 or 2, address, port).

    Raises :class:`CommandError` 522 for a protocol other than 1 (IPv4) and 2 (IPv6).
    """
    if len(arg) < 8 or not 33 <= ord(arg[0]) <= 126:
        raise CommandError(501, "Syntax error in EPRT.")
    fields = arg.split(arg[0])
    if len(fields) != 5 or fields[0] or fields[4]:
        raise CommandError(501, "Syntax error in EPRT.")
    proto, address, port_text = fields[1], fields[2], fields[3]
    if proto not in ("1", "2"):
        raise CommandError(522, "Network protocol not supported, use (1,2)")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise CommandError(501, "Syntax error in EPRT: bad address.") from None
    if parsed.version != (4 if proto == "1" else 6):
        raise CommandError(501, "Syntax error in EPRT: address does not match the protocol.")
    if not (port_text.isdigit() and 0 < int(port_text) <= 65535):
        raise CommandError(501, "Syntax error in EPRT: bad port.")
    return int(proto), str(parsed), int(port_text)


def parse_rest(arg: str) -> int:
    """REST's byte offset: a non-negative decimal integer."""
    text = arg.strip()
    if not text.isdigit() or len(text) > 19:
        raise CommandError(501, "REST requires a non-negative byte offset.")
    return int(text)


def split_list_arg(arg: str) -> tuple[str, str]:
    """LIST/NLST argument -> (ls options, path).

    Clients send ``ls`` options (``LIST -la``, ``LIST -a /dir``); they are
    accepted and ignored, as every common server does. A name that really
    starts with ``-`` needs a path prefix (``./-x``).
    """
    text = arg.strip()
    if text.startswith("-"):
        options, _, rest = text.partition(" ")
        return options, rest.strip()
    return "", arg
