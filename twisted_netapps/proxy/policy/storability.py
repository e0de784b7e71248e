"""What a shared cache may store, and which header fields it keeps (RFC 9111 3, 3.1, 3.5).

:func:`refusal` answers "may this response be stored?" with None or the
reason it may not (for logs and tests). :func:`fields_to_store` strips what
must never reach a later client from the store.

Choices:

- Only responses to GET are stored. HEAD responses have no content to
  serve; POST responses with Content-Location are allowed by RFC 9110 9.3.3
  but almost never useful.
- 206 and 304 are never stored as entries: we do not combine partial
  content (3.4 allows not storing it) and a 304 only updates (4.3.4).
- A request carrying ``no-store`` stores nothing (5.2.1.5).
- ``Vary: *`` is refused outright: such a response can never be selected
  (4.1), storing it would only waste space.
- ``must-understand`` (5.2.2.3): stored only for status codes we implement,
  and then ``no-store`` is overridden as the RFC says. We understand every
  final status code registered in RFC 9110 except 206 and 304.
- Qualified ``private="f"``: the named fields are dropped and the rest
  stored (5.2.2.7 allows it); likewise qualified ``no-cache="f"`` (5.2.2.4):
  those fields are never sent from the store, only after validation brings
  them again.
- ``Set-Cookie`` is stored like any field (3.1: all fields but the listed
  exceptions); it is the origin's job to mark personal responses private.
"""

from __future__ import annotations

from http import HTTPStatus

from twisted_netapps.http.fields import HOP_BY_HOP, Headers, connection_options
from twisted_netapps.proxy.policy.directives import RequestDirectives, ResponseDirectives
from twisted_netapps.proxy.policy.freshness import HEURISTIC_STATUSES
from twisted_netapps.proxy.policy.vary import vary_names

UNDERSTOOD_STATUSES = frozenset(int(s) for s in HTTPStatus if int(s) >= 200) - {206, 304}

# 3.1: fields specific to the proxy used when forwarding are never stored.
PROXY_SPECIFIC = frozenset({b"proxy-authenticate", b"proxy-authentication-info", b"proxy-authorization"})


def refusal(
    method: bytes,
    request_headers: Headers,
    request_directives: RequestDirectives,
    status: int,
    response_headers: Headers,
    directives: ResponseDirectives,
    *,
    shared: bool = True,
) -> str | None:
    """None if the response may be stored, else why not."""
    if method != b"GET":
        return "only responses to GET are stored"
    if status < 200:
        return "interim response"
    if status in (206, 304):
        return f"status {status} is never stored as an entry"
    if directives.must_understand:
        if status not in UNDERSTOOD_STATUSES:
            return "must-understand with a status code we do not implement"
    elif directives.no_store:
        return "response says no-store"
    if request_directives.no_store:
        return "request says no-store"
    if shared and directives.private:
        return "response is private"
    if shared and b"authorization" in request_headers and not (
        directives.public or directives.must_revalidate or directives.s_maxage is not None
    ):
        return "request had Authorization and the response is not public, must-revalidate or s-maxage"
    if vary_names(response_headers) is None:
        return "Vary: * never matches"
    if not (
        directives.public
        or directives.max_age is not None
        or (shared and directives.s_maxage is not None)
        or b"expires" in response_headers
        or status in HEURISTIC_STATUSES
        or (directives.must_understand and status in UNDERSTOOD_STATUSES)
    ):
        return f"no explicit freshness and status {status} is not heuristically cacheable"
    return None


_NEVER_STORED = HOP_BY_HOP | PROXY_SPECIFIC


def fields_to_store(headers: Headers, directives: ResponseDirectives, *, shared: bool = True) -> Headers:
    """*headers* minus what must not be stored (3.1, 5.2.2.4, 5.2.2.7), in one pass (a new Headers)."""
    drop = _NEVER_STORED
    options = connection_options(headers)
    if options:
        drop = drop | options
    if directives.no_cache_fields:
        drop = drop | directives.no_cache_fields
    if shared and directives.private_fields:
        drop = drop | directives.private_fields
    return Headers.from_lines([field for field in headers.lines() if field[0] not in drop])
