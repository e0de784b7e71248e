"""The proxy's side of request targets: the cache key and Via.

Target parsing itself is :mod:`twisted_netapps.http.targets`. A forward
proxy gets absolute-form targets (``GET http://host:port/path``) and
CONNECT's authority-form (``host:port``); a reverse proxy gets origin-form
(``/path``) and must also accept absolute-form (RFC 9112 3.2.2). Either way
the cache key is the effective request URI (RFC 9110 7.1):
``http://host[:port]/path?query`` with the scheme and host lowercased, the
default port dropped and an empty path made ``/``; the path and query are
kept byte for byte.

Via (RFC 9110 7.6.3): we append ``1.1 <pseudonym>`` to requests and
responses we forward; a request that already lists our pseudonym has looped
back to us.
"""

from __future__ import annotations

from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.fields import Headers, split_lists
from twisted_netapps.http.targets import Target, origin_form


def origin_form_target(path: bytes, origin: Target) -> Target:
    """An origin-form target on a reverse proxy: the URI of *path* on *origin*."""
    if not path.startswith(b"/"):
        raise ProtocolError(400, "malformed request target")
    return Target(origin.scheme, origin.host, origin.port, origin_form(path))


def via_pseudonyms(headers: Headers) -> list[bytes]:
    """The received-by part of every Via member."""
    lines = headers.get_all(b"via")
    if not lines:
        return []
    names = []
    for member in split_lists(lines):
        parts = member.split()
        if len(parts) >= 2:
            names.append(parts[1].lower())
    return names


def add_via(headers: Headers, version: bytes, pseudonym: bytes) -> None:
    """Append our hop to Via (one combined line, as RFC 9110 7.6.3 shows)."""
    ours = version + b" " + pseudonym
    existing = headers.get(b"via")
    headers.set(b"Via", existing + b", " + ours if existing else ours)
