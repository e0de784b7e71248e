"""Request targets (RFC 9112 3.2), the effective URI that keys the cache, and Via.

A forward proxy gets absolute-form targets (``GET http://host:port/path``)
and CONNECT's authority-form (``host:port``); a reverse proxy gets
origin-form (``/path``) and must also accept absolute-form (3.2.2). Either
way the cache key is the effective request URI (RFC 9110 7.1):
``http://host[:port]/path?query`` with the scheme and host lowercased, the
default port dropped and an empty path made ``/``; the path and query are
kept byte for byte (no percent-decoding: ``/a%2Fb`` and ``/a/b`` may be
different resources).

Via (RFC 9110 7.6.3): we append ``1.1 <pseudonym>`` to requests and
responses we forward; a request that already lists our pseudonym has looped
back to us.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.fields import Headers, split_lists

_REG_NAME = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%]+")
_IPV6 = re.compile(rb"\[[0-9A-Fa-f:.]+\]")
_PATH_QUERY = re.compile(rb"/[\x21-\x7e]*")
DEFAULT_PORTS = {b"http": 80, b"https": 443}


@dataclass(frozen=True, slots=True)
class Target:
    scheme: bytes
    host: bytes  # lowercase; IPv6 literals keep their brackets
    port: int
    path: bytes  # origin-form: path plus query, never empty

    @property
    def authority(self) -> bytes:
        if self.port == DEFAULT_PORTS.get(self.scheme):
            return self.host
        return b"%b:%d" % (self.host, self.port)

    @property
    def uri(self) -> bytes:
        return self.scheme + b"://" + self.authority + self.path

    @property
    def connect_host(self) -> str:
        """The host as a connect call wants it (no brackets)."""
        return self.host.strip(b"[]").decode("ascii")


_authorities: dict[tuple[bytes, int | None], tuple[bytes, int]] = {}


def parse_authority(authority: bytes, default_port: int | None) -> tuple[bytes, int]:
    """``host[:port]`` -> (lowercase host, port); ProtocolError(400) if malformed.

    Remembered (bounded): clients name the same few hosts over and over.
    """
    known = _authorities.get((authority, default_port))
    if known is None:
        known = _parse_authority(authority, default_port)
        if len(_authorities) >= 1024:
            _authorities.clear()
        _authorities[(authority, default_port)] = known
    return known


def _parse_authority(authority: bytes, default_port: int | None) -> tuple[bytes, int]:
    if authority.startswith(b"["):
        end = authority.find(b"]")
        host, rest = authority[: end + 1], authority[end + 1:]
        if end < 0 or not _IPV6.fullmatch(host) or (rest and not rest.startswith(b":")):
            raise ProtocolError(400, "malformed host")
        port_text = rest[1:] if rest else b""
    else:
        host, _colon, port_text = authority.partition(b":")
        if not _REG_NAME.fullmatch(host) or b"@" in host:
            raise ProtocolError(400, "malformed host")
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise ProtocolError(400, "malformed port")
        port = int(port_text)
    elif default_port is None:
        raise ProtocolError(400, "a port is required")
    else:
        port = default_port
    return host.lower(), port


def parse_absolute_target(target: bytes) -> Target:
    """An absolute-form target; only the http scheme (https goes through CONNECT)."""
    scheme, sep, rest = target.partition(b"://")
    scheme = scheme.lower()
    if not sep:
        raise ProtocolError(400, "a proxy request needs an absolute URI (http://host/path)")
    if scheme != b"http":
        raise ProtocolError(400, f"unsupported URI scheme {scheme.decode('latin-1')!r} (https goes through CONNECT)")
    slash = rest.find(b"/")
    query = rest.find(b"?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority, path = rest[:cut], rest[cut:]
    if b"@" in authority:
        raise ProtocolError(400, "credentials in a request URI are not allowed")
    host, port = parse_authority(authority, 80)
    return Target(scheme, host, port, _origin_form(path))


def _origin_form(path: bytes) -> bytes:
    path = path.split(b"#", 1)[0]
    if not path or path.startswith(b"?"):
        path = b"/" + path
    if not _PATH_QUERY.fullmatch(path):
        raise ProtocolError(400, "malformed request target")
    return path


def origin_form_target(path: bytes, host_header: bytes | None, default: Target) -> Target:
    """An origin-form target on a reverse proxy: keyed by Host, routed to *default*'s origin."""
    if not path.startswith(b"/"):
        raise ProtocolError(400, "malformed request target")
    if host_header:
        host, port = parse_authority(host_header, DEFAULT_PORTS[default.scheme])
    else:
        host, port = default.host, default.port
    return Target(default.scheme, host, port, _origin_form(path))


def parse_connect_target(target: bytes) -> tuple[bytes, int]:
    return parse_authority(target, None)


def via_pseudonyms(headers: Headers) -> list[bytes]:
    """The received-by part of every Via member."""
    names = []
    for member in split_lists(headers.get_all(b"via")):
        parts = member.split()
        if len(parts) >= 2:
            names.append(parts[1].lower())
    return names


def add_via(headers: Headers, version: bytes, pseudonym: bytes) -> None:
    """Append our hop to Via (one combined line, as RFC 9110 7.6.3 shows)."""
    ours = version + b" " + pseudonym
    existing = headers.get(b"via")
    headers.set(b"Via", existing + b", " + ours if existing else ours)
