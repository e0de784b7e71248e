"""Message heads (RFC 9112 sections 2-5): request and status lines plus fields.

Parsing is strict where leniency has let requests be smuggled or split past
intermediaries, and lenient only where it is safe because we re-serialise:

- a bare LF ends a line (RFC 9112 2.2 allows it); a bare CR is an error;
- whitespace between a field name and its colon is an error (5.1 MUST);
- obs-fold (a line starting with SP/HTAB) is an error in requests and is
  replaced by one SP in responses (5.2);
- CR, LF and NUL inside a value are errors (RFC 9110 5.5);
- the method and field names must be tokens, the target visible ASCII, the
  version ``HTTP/1.x`` (other majors get 505).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.fields import TOKEN, Headers

_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([^\r\n]*))?")
_VERSION_LIKE = re.compile(rb"[^ ]+ [^ ]+ HTTP/[0-9]+\.[0-9]+")
_BAD_VALUE = re.compile(rb"[\x00\r]")
# One field line in one match: a token name, the colon, the value without
# surrounding whitespace and without CR or NUL (anything else falls back to
# the slow path, which says what is wrong).
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00\r]*?)[ \t]*")


_END_OF_HEAD = re.compile(rb"\n\r?\n")
_REQUEST_START = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}(?: |\Z)")


def could_start_request(line_start: bytes) -> bool:
    """Whether *line_start* (the first bytes of a line) can begin a request
    line: a method token, then a space or nothing yet. Lets a server refuse
    noise (a TLS handshake on the plain port) at once, and tell a long
    target (414) from garbage (400)."""
    return _REQUEST_START.match(line_start, 0, 65) is not None


def head_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the head at the start of *buffer* ends: (end of its last line, start
    of what follows it), or None while it is incomplete. CRLF CRLF is the
    common case (one ``find``); bare LFs are accepted too (RFC 9112 2.2)."""
    end = buffer.find(b"\r\n\r\n")
    if end >= 0 and buffer.find(b"\n\n", 0, end) < 0 and buffer.find(b"\n\r\n", 0, end) < 0:
        return end, end + 4
    match = _END_OF_HEAD.search(buffer)
    if match is None:
        return None
    block_end = match.start()
    if buffer[block_end - 1:block_end] == b"\r":
        block_end -= 1
    return block_end, match.end()


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: bytes  # b"1.0" or b"1.1"
    headers: Headers


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    version: bytes
    headers: Headers


# Every field line of a well-formed section at once (in C): each match is
# anchored at a line start and runs to its end, so a section parses this way
# exactly when the number of matches equals the number of lines. Anything
# else takes the line-by-line path, which also says what is wrong.
_FIELD_LINES = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00\r\n]*)\r?$", re.M)


def _lines(block: bytes) -> list[bytes]:
    lines = block.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _split_head(block: bytes) -> tuple[bytes, bytes]:
    """(first line without its CR, the field section)."""
    first, _newline, rest = block.partition(b"\n")
    return (first[:-1] if first.endswith(b"\r") else first), rest


def _parse_section(section: bytes, *, max_fields: int, fold_ok: bool, status: int) -> Headers:
    if not section:
        return Headers.from_lines([])
    pairs = _FIELD_LINES.findall(section)
    if len(pairs) == section.count(b"\n") + 1 and len(pairs) <= max_fields:
        return Headers.from_lines([(name.lower(), name, value.rstrip(b" \t")) for name, value in pairs])
    return _parse_fields(_lines(section), max_fields=max_fields, fold_ok=fold_ok, status=status)


def _parse_fields(lines: list[bytes], *, max_fields: int, fold_ok: bool, status: int) -> Headers:
    if len(lines) > max_fields:
        raise ProtocolError(431 if status == 400 else status, f"more than {max_fields} header fields")
    triples: list[tuple[bytes, bytes, bytes]] = []
    fast = _FIELD_LINE.fullmatch
    for line in lines:
        match = fast(line)
        if match is not None:
            name, value = match.groups()
            triples.append((name.lower(), name, value))
            continue
        if line[:1] in (b" ", b"\t"):
            if not fold_ok or not triples:
                raise ProtocolError(status, "obsolete line folding in a header field")
            lower, name, value = triples[-1]
            triples[-1] = (lower, name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        name, colon, value = line.partition(b":")
        if not colon or TOKEN.fullmatch(name) is None:
            raise ProtocolError(status, "malformed header field line")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise ProtocolError(status, "CR or NUL in a header field value")
        triples.append((name.lower(), name, value))
    return Headers.from_lines(triples)


def parse_request_head(block: bytes, *, max_fields: int = 100) -> RequestHead:
    """Parse a request head (*block* excludes the empty line that ends it)."""
    first, section = _split_head(block)
    return parse_request_parts(first, section, max_fields=max_fields)


def parse_request_parts(first: bytes, section: bytes, *, max_fields: int = 100) -> RequestHead:
    """Parse a request line (without its line end) and the field section after it."""
    match = _REQUEST_LINE.fullmatch(first)
    if match is None:
        if _VERSION_LIKE.fullmatch(first) and not first.rsplit(b" ", 1)[1].startswith(b"HTTP/1."):
            raise ProtocolError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        raise ProtocolError(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1":
        raise ProtocolError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    # HTTP/1.2 and later minors are HTTP/1.1 to us (RFC 9110 2.5).
    version = b"1.0" if minor == b"0" else b"1.1"
    headers = _parse_section(section, max_fields=max_fields, fold_ok=False, status=400)
    return RequestHead(method, target, version, headers)


def parse_response_head(block: bytes, *, max_fields: int = 100) -> ResponseHead:
    """Parse a response head from an upstream server (errors carry status 502)."""
    first, section = _split_head(block)
    match = _STATUS_LINE.fullmatch(first)
    if match is None or match.group(1) != b"1":
        raise ProtocolError(502, "malformed status line from upstream")
    _major, minor, code, reason = match.groups()
    headers = _parse_section(section, max_fields=max_fields, fold_ok=True, status=502)
    return ResponseHead(int(code), reason or b"", b"1.0" if minor == b"0" else b"1.1", headers)


def serialize_request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    return b"".join((method, b" ", target, b" HTTP/1.1\r\n", headers.serialize(), b"\r\n"))


def serialize_response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    return b"".join((b"HTTP/1.1 %d " % status, reason, b"\r\n", headers.serialize(), b"\r\n"))
