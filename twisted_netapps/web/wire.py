"""The web service's view of a request head, over the shared HTTP/1.1 codec.

Parsing and its strictness live in :mod:`twisted_netapps.http` (one codec for
every HTTP service): the request line, field syntax, Host, body framing and
the smuggling defences. This module turns a parsed head into what the web
handlers use -- :class:`RequestHead`, with the target split into path and
query, the effective host, the framing and the expectation -- and adds the
origin server's own rules:

- a request-target is origin-form, absolute-form (``http``/``https``; its
  authority replaces Host, RFC 9112 3.2.2), ``*`` for OPTIONS, or
  authority-form for CONNECT; anything else is 400;
- an Expect other than ``100-continue`` is 417 (RFC 9110 10.1.1);
- repeated fields are joined with ", " (RFC 9110 5.3), Cookie with "; "
  (RFC 6265 5.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_netapps.http import head as http_head
from twisted_netapps.http.body import CHUNKED, Framing, request_framing
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.targets import origin_form, parse_absolute_target, parse_connect_target, split_query
from twisted_netapps.web.errors import StatusError

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


def _split_target(method: bytes, target: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """(path, query, authority from an absolute-form or CONNECT target, else None)."""
    if target[:1] == b"/":
        return (*split_query(origin_form(target)), None)
    if target == b"*":
        if method != b"OPTIONS":
            raise BadRequest(400, "'*' is only for OPTIONS")
        return b"", None, None
    if method == b"CONNECT":
        parse_connect_target(target)
        return b"", None, target
    absolute = parse_absolute_target(target, (b"http", b"https"))
    return (*split_query(absolute.path), absolute.authority)


def request_view(head: http_head.RequestHead, framing: Framing, keep_alive: bool, request_line: bytes) -> RequestHead:
    """The web handlers' :class:`RequestHead` for a head the codec accepted;
    :class:`BadRequest` for a target or expectation the server refuses."""
    try:
        path, query, authority = _split_target(head.method, head.target)
    except ProtocolError as e:
        raise BadRequest(e.status, e.detail) from None
    fields = head.headers.joined()
    if b"cookie" in fields:
        cookies = head.headers.get_all(b"cookie")
        if len(cookies) > 1:
            fields[b"cookie"] = b"; ".join(cookies)  # RFC 6265 5.4: one Cookie, pairs split by "; "
    expect = fields.get(b"expect")
    if expect is not None and expect.lower() != b"100-continue":
        raise BadRequest(417, "unsupported expectation")
    version = 10 if head.version == b"1.0" else 11
    return RequestHead(
        head.method.decode("ascii"), head.target, path, query, version, fields,
        authority if authority is not None else fields.get(b"host", b""), keep_alive,
        framing.length if framing.kind != CHUNKED and b"content-length" in fields else None,
        framing.kind == CHUNKED, expect is not None and version == 11, request_line,
    )
