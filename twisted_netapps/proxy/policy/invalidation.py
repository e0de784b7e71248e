"""Invalidation after unsafe requests (RFC 9111 4.4).

A non-error response (2xx or 3xx) to any method not known to be safe --
POST, PUT, DELETE, PATCH, M-SEARCH, anything we do not recognise --
invalidates the target URI, and the URIs in Location and Content-Location
when they have the same origin (scheme, host, port) as the target; other
origins are never touched, so one site cannot flush another's entries.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from twisted_netapps.http.fields import Headers

SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


def invalidates(method: bytes, status: int) -> bool:
    return method not in SAFE_METHODS and method != b"CONNECT" and 200 <= status < 400


def _origin(uri: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(uri)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def invalidated_uris(target_uri: bytes, response_headers: Headers) -> list[bytes]:
    """The target URI plus same-origin Location/Content-Location, resolved against it."""
    base = target_uri.decode("latin-1")
    origin = _origin(base)
    uris = [target_uri]
    for name in (b"location", b"content-location"):
        value = response_headers.get(name)
        if not value:
            continue
        try:
            resolved = urljoin(base, value.decode("latin-1").strip())
        except ValueError:
            continue
        if _origin(resolved) == origin:
            uris.append(resolved.split("#", 1)[0].encode("latin-1"))
    return uris
