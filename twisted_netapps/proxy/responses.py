"""Response heads the proxy sends to clients.

- Forwarded responses keep every end-to-end field of the origin's
  response; hop-by-hop fields go, Date is added when missing (RFC 9110
  6.6.1), our hop joins Via, ``X-Cache`` says MISS or HIT, and the framing
  is ours for this client connection.
- Responses from the store (RFC 9111 4) carry the stored fields with Age
  replaced by the current age; Date stays the origin's (a cache must not
  change it). Their heads are prepared once per second of age and reused:
  a hit on a small object is one dictionary lookup and two writes.
- A 304 to a client's own conditional request carries the fields RFC 9110
  15.4.5 lists.
"""

from __future__ import annotations

from http import HTTPStatus

from twisted_netapps.http.fields import Headers, end_to_end_lines
from twisted_netapps.proxy.store.entry import Entry

# Fields of the stored response replaced on the way out.
_REPLACED_ON_HITS = frozenset({b"age", b"content-length", b"x-cache", b"via"})
_NOT_MODIFIED_FIELDS = (b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary")

KEEP_ALIVE = 0  # HTTP/1.1 persistent: no Connection field needed
CLOSE = 1  # "Connection: close"
KEEP_ALIVE_10 = 2  # an HTTP/1.0 client that asked for keep-alive
_CONNECTION_LINES = (b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n")


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def status_line(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %b\r\n" % (status, reason)


_NOT_FORWARDED = frozenset({b"content-length", b"x-cache", b"via"})


def forwarded_head(head, date: bytes, via: bytes, *, x_cache: bytes, length: int | None, chunked: bool,
                   connection: int) -> bytes:
    """The origin's response head as we forward it, serialised in one pass."""
    headers = head.headers
    parts = [status_line(head.status, head.reason)]
    parts += end_to_end_lines(headers, _NOT_FORWARDED)
    if b"date" not in headers:
        parts.append(b"Date: " + date + b"\r\n")
    received = headers.get(b"via")
    parts.append(b"Via: " + (received + b", 1.1 " if received else b"1.1 ") + via + b"\r\n")
    return b"".join(parts) + _closing_lines(x_cache, length, chunked, connection)


def finish_head(status: int, reason: bytes, fields: Headers, *, x_cache: bytes, length: int | None,
                chunked: bool, connection: int) -> bytes:
    """Status line, fields, X-Cache, framing and the Connection line."""
    return status_line(status, reason) + fields.serialize() + _closing_lines(x_cache, length, chunked, connection)


def _closing_lines(x_cache: bytes, length: int | None, chunked: bool, connection: int) -> bytes:
    """X-Cache, the framing of this client connection, Connection and the empty line."""
    if length is not None:
        framing = b"Content-Length: %d\r\n" % length
    else:
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b""
    return b"X-Cache: " + x_cache + b"\r\n" + framing + _CONNECTION_LINES[connection] + b"\r\n"


def stored_fields(entry: Entry, age: int, via: bytes) -> Headers:
    """The stored response's fields with Age and Via for this use."""
    fields = entry.headers
    via_value = fields.get(b"via")
    fields.remove_all(_REPLACED_ON_HITS)
    fields.add(b"Age", b"%d" % age)
    fields.add(b"Via", (via_value + b", 1.1 " if via_value else b"1.1 ") + via)
    return fields


def hit_head(entry: Entry, age: float, via: bytes, connection: int, x_cache: bytes = b"HIT") -> bytes:
    """The head for serving *entry* (same for GET and HEAD), prepared per second of age."""
    whole_age = int(age)
    if x_cache != b"HIT":
        return _build_hit_head(entry, whole_age, via, connection, x_cache)
    if entry.prepared_second != whole_age or entry.prepared is None:
        entry.prepared = {}
        entry.prepared_second = whole_age
    head = entry.prepared.get(connection)
    if head is None:
        head = entry.prepared[connection] = _build_hit_head(entry, whole_age, via, connection, x_cache)
    return head


def _build_hit_head(entry: Entry, age: int, via: bytes, connection: int, x_cache: bytes) -> bytes:
    return finish_head(entry.status, entry.reason, stored_fields(entry, age, via), x_cache=x_cache,
                       length=entry.body_length, chunked=False, connection=connection)


def not_modified_head(entry: Entry, age: float, via: bytes, connection: int, x_cache: bytes) -> bytes:
    stored = entry.headers
    fields = Headers()
    for name in _NOT_MODIFIED_FIELDS:
        for value in stored.get_all(name):
            fields.add(name.title(), value)
    if b"etag" not in stored and b"last-modified" in stored:
        fields.add(b"Last-Modified", stored.get(b"last-modified"))
    fields.add(b"Age", b"%d" % int(age))
    via_value = stored.get(b"via")
    fields.add(b"Via", (via_value + b", 1.1 " if via_value else b"1.1 ") + via)
    return finish_head(304, b"Not Modified", fields, x_cache=x_cache, length=None, chunked=False,
                       connection=connection)


def error_response(status: int, detail: str, date: bytes, via: bytes, *, connection: int = CLOSE,
                   head_only: bool = False, extra: Headers | None = None) -> bytes:
    """A short text/plain error generated by the proxy itself."""
    reason = reason_phrase(status)
    body = b"%d %b: %b\n" % (status, reason, detail.encode("utf-8", "replace"))
    fields = Headers([(b"Date", date), (b"Content-Type", b"text/plain; charset=utf-8"),
                      (b"Cache-Control", b"no-store"), (b"Via", b"1.1 " + via)])
    for name, value in extra or ():
        fields.add(name, value)
    head = finish_head(status, reason, fields, x_cache=b"MISS", length=len(body), chunked=False,
                       connection=connection)
    return head if head_only else head + body
