"""HTTP/1.1 request heads (RFC 9112): parsing and validation, bounded, no I/O.

:func:`parse_request_head` turns the bytes of a request line and header
section into a :class:`RequestHead`, or raises :class:`BadRequest` carrying
the status the client gets (400, 414, 431, 501, 505, 417). What it insists on,
where RFC 9112/9110 give a choice, and why:

- the request line is ``method SP request-target SP HTTP/d.d`` exactly; a
  major version other than 1 is 505 (HTTP/2 and HTTP/0.9 alike); ``HTTP/1.2``
  is served as 1.1 (RFC 9110 2.5);
- a request-target is origin-form, absolute-form (``http://host/p``, its
  authority replacing Host), ``*`` for OPTIONS, or authority-form for
  CONNECT; anything else, fragments and non-ASCII bytes included, is 400;
- field names are tokens with the colon right after them (whitespace before
  the colon is 400, RFC 9112 5.1), obsolete line folding is 400 (5.2), values
  with NUL/CR/LF or other controls are 400 (RFC 9110 5.5);
- HTTP/1.1 needs exactly one valid Host (400 otherwise, RFC 9112 3.2);
- message framing is unambiguous: Content-Length and Transfer-Encoding
  together, differing Content-Length values, a Transfer-Encoding in an HTTP/1.0
  request or one not ending in ``chunked`` are refused (the request smuggling
  defences of RFC 9112 6.1/6.3); a coding other than chunked is 501;
- bare LF is accepted as a line end (RFC 9112 2.2 allows it; ``printf`` and
  ``nc`` users send it), a bare CR inside a line is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.web.errors import StatusError

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]+) HTTP/(\d)\.(\d)\Z")
_FIELD_LINE = re.compile(rb"(" + TOKEN + rb"):[ \t]*(.*?)[ \t]*\Z", re.S)
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN_START = re.compile(TOKEN + rb"(?: |\Z)")
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::\d*)?\Z")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+\-.]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?\Z")
_DIGITS = re.compile(rb"\d{1,18}\Z")
_ORIGIN = re.compile(rb"(/[^?#]*)(?:\?([^#]*))?\Z")

METHODS_WITH_MEANING = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH")
)


class BadRequest(StatusError):
    """The request cannot be served as sent; *status* is the reply's code."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a client may send (each excess has its own status)."""

    max_request_line: int = 8192  # longer: 414
    max_header_bytes: int = 16384  # the header section without the request line; longer: 431
    max_headers: int = 100  # more fields: 431
    max_chunk_line: int = 4096  # a chunk-size line with extensions; longer: 400


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: bytes  # as sent (for the access log)
    path: bytes  # percent-encoded path, "/..." ("" for "*" and CONNECT)
    query: bytes | None
    version: int  # 10 or 11
    headers: dict[bytes, bytes]  # lowercase name -> value; repeated fields joined with ", "
    host: bytes
    keep_alive: bool
    content_length: int | None  # None: no Content-Length (see chunked)
    chunked: bool
    expect_continue: bool
    request_line: bytes

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def looks_like_request_start(data: bytes) -> bool:
    """Whether *data* could be the start of a request line (a method token,
    then a space or nothing yet): tells a long target (414) from noise (400)."""
    return bool(_TOKEN_START.match(data[:64])) or (len(data) < 64 and re.fullmatch(TOKEN, data) is not None)


def _split_lines(block: bytes) -> list[bytes]:
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    return block.split(b"\n")


def _parse_request_line(line: bytes) -> tuple[str, bytes, int]:
    m = _REQUEST_LINE.match(line)
    if m is None:
        if line.count(b" ") == 2 and re.search(rb" HTTP/\d\.\d\Z", line):
            raise BadRequest(400, "bad request target")
        raise BadRequest(400, "malformed request line")
    method, target, major, minor = m.groups()
    if major != b"1":
        raise BadRequest(505, "HTTP version not supported")
    return method.decode("ascii"), target, 10 if minor == b"0" else 11


def _parse_fields(lines: list[bytes], limits: Limits) -> dict[bytes, bytes]:
    if len(lines) > limits.max_headers:
        raise BadRequest(431, f"more than {limits.max_headers} header fields")
    fields: dict[bytes, bytes] = {}
    match = _FIELD_LINE.match
    bad_byte = _BAD_VALUE_BYTE.search
    for line in lines:
        m = match(line)
        if m is None:
            if line[:1] in (b" ", b"\t"):
                raise BadRequest(400, "obsolete line folding")
            raise BadRequest(400, "malformed header field")
        name, value = m.groups()
        if bad_byte(value):
            raise BadRequest(400, "control character in a header field")
        name = name.lower()
        previous = fields.get(name)
        if previous is None:
            fields[name] = value
        elif name == b"host":
            raise BadRequest(400, "more than one Host")
        else:
            fields[name] = previous + (b"; " if name == b"cookie" else b", ") + value
    return fields


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip(b" \t").lower() for t in value.split(b",") if t.strip(b" \t")]


def _content_length(value: bytes) -> int:
    # "5, 5" (a repeated field, RFC 9110 8.6) is one length; differing values are not.
    values = {v.strip(b" \t") for v in value.split(b",")}
    if len(values) != 1:
        raise BadRequest(400, "conflicting Content-Length values")
    (text,) = values
    if not _DIGITS.match(text):
        raise BadRequest(400, "invalid Content-Length")
    return int(text)


def _split_target(method: str, target: bytes, fields: dict[bytes, bytes]) -> tuple[bytes, bytes | None, bytes | None]:
    """(path, query, authority from an absolute-form target or None)."""
    if target[:1] == b"/":
        m = _ORIGIN.match(target)
        if m is None:
            raise BadRequest(400, "bad request target")
        return m.group(1), m.group(2), None
    if target == b"*":
        if method != "OPTIONS":
            raise BadRequest(400, "'*' is only for OPTIONS")
        return b"", None, None
    if method == "CONNECT":
        if not _HOST.match(target) or b":" not in target:
            raise BadRequest(400, "bad CONNECT target")
        return b"", None, target
    m = _ABSOLUTE.match(target)
    if m is None:
        raise BadRequest(400, "bad request target")
    scheme, authority, path, query = m.groups()
    if scheme.lower() not in (b"http", b"https") or not authority or b"@" in authority:
        raise BadRequest(400, "bad absolute-form target")
    return path or b"/", query, authority


def parse_request_head(block: bytes, limits: Limits) -> RequestHead:
    """Parse a request line plus header section (without the final empty line)."""
    lines = _split_lines(block)
    request_line = lines[0]
    if len(request_line) > limits.max_request_line:
        raise BadRequest(414, "request line too long")
    method, target, version = _parse_request_line(request_line)
    if len(block) - len(request_line) > limits.max_header_bytes:
        raise BadRequest(431, "header section too large")
    fields = _parse_fields(lines[1:], limits)
    path, query, authority = _split_target(method, target, fields)

    host = fields.get(b"host")
    if host is None:
        if version == 11:
            raise BadRequest(400, "HTTP/1.1 request without Host")
        host = b""
    elif not _HOST.match(host):
        raise BadRequest(400, "invalid Host")
    if authority is not None:
        host = authority  # RFC 9112 3.2.2: the target's authority wins over Host

    connection = _tokens(fields[b"connection"]) if b"connection" in fields else ()
    keep_alive = b"close" not in connection and (version == 11 or b"keep-alive" in connection)

    chunked = False
    content_length = None
    transfer_encoding = fields.get(b"transfer-encoding")
    if transfer_encoding is not None:
        if b"content-length" in fields:
            raise BadRequest(400, "both Transfer-Encoding and Content-Length")
        if version == 10:
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = _tokens(transfer_encoding)
        if not codings or codings[-1] != b"chunked":
            raise BadRequest(400, "Transfer-Encoding does not end in chunked")
        if len(codings) > 1:
            raise BadRequest(501, "transfer coding not implemented")
        chunked = True
    elif b"content-length" in fields:
        content_length = _content_length(fields[b"content-length"])

    expect = fields.get(b"expect")
    expect_continue = False
    if expect is not None:
        if expect.lower() != b"100-continue":
            raise BadRequest(417, "unsupported expectation")
        expect_continue = version == 11

    return RequestHead(
        method, target, path, query, version, fields, host, keep_alive,
        content_length, chunked, expect_continue, request_line,
    )


class ChunkedDecoder:
    """Incremental chunked transfer-coding decoder (RFC 9112 7.1), bounded.

    :meth:`feed` returns ``(data, consumed, done)``: the decoded bytes found in
    *buffer*, how many bytes of it were used, and whether the last chunk and
    trailer section are complete. Trailer fields are read (bounded) and
    dropped, as RFC 9112 7.1.2 allows. Errors are :class:`BadRequest`.
    """

    _SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\Z")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._remaining = 0  # bytes left in the current chunk
        self._state = "size"  # size | data | data-end | trailer | done
        self._trailer_bytes = 0

    def feed(self, buffer: bytes) -> tuple[list[bytes], int, bool]:
        out: list[bytes] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            state = self._state
            if state == "data":
                take = min(self._remaining, end - pos)
                out.append(buffer[pos:pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = "data-end"
            elif state in ("size", "data-end", "trailer"):
                nl = buffer.find(b"\n", pos)
                if nl < 0:
                    if end - pos > self.limits.max_chunk_line:
                        raise BadRequest(400, "chunk line too long")
                    break
                line = buffer[pos:nl]
                pos = nl + 1
                if state == "data-end":
                    if line not in (b"", b"\r"):
                        raise BadRequest(400, "chunk data longer than its size")
                    self._state = "size"
                elif state == "size":
                    if len(line) > self.limits.max_chunk_line:
                        raise BadRequest(400, "chunk line too long")
                    m = self._SIZE.match(line)
                    if m is None:
                        raise BadRequest(400, "invalid chunk size")
                    size = int(m.group(1), 16)
                    if size:
                        self._remaining = size
                        self._state = "data"
                    else:
                        self._state = "trailer"
                else:  # trailer: fields until an empty line
                    self._trailer_bytes += len(line) + 1
                    if self._trailer_bytes > self.limits.max_header_bytes:
                        raise BadRequest(431, "trailer section too large")
                    if line in (b"", b"\r"):
                        self._state = "done"
                        return out, pos, True
                    if not _FIELD_LINE.match(line.rstrip(b"\r")):
                        raise BadRequest(400, "malformed trailer field")
            else:
                return out, pos, True
        return out, pos, self._state == "done"
