"""Request targets and Host (RFC 9112 3.2, RFC 9110 4.2 and 7.2).

A request-target takes one of four forms: origin-form (``/path?query``),
absolute-form (``http://host:port/path``, what proxies get and servers must
accept), authority-form (``host:port``, only for CONNECT) and asterisk-form
(``*``, only for OPTIONS). Anything else -- fragments included, which no
form's grammar allows -- is 400. Path and query are kept byte for byte (no
percent-decoding: ``/a%2Fb`` and ``/a/b`` may be different resources); the
scheme and host are case-insensitive and come back lowercased.

Host must be present once in HTTP/1.1 and be a valid ``uri-host [":" port]``
(empty is allowed: a target without an authority); otherwise 400 (3.2). In
absolute-form the target's authority wins over Host (3.2.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.http.errors import ProtocolError

_REG_NAME = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%]+")
_IPV6 = re.compile(rb"\[[0-9A-Fa-f:.]+\]")
_HOST_FIELD = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_PATH_QUERY = re.compile(rb"/[\x21-\x22\x24-\x7e]*")  # visible ASCII but "#"
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


def valid_host_field(value: bytes) -> bool:
    """Whether *value* is a valid Host field value (RFC 9110 7.2)."""
    return _HOST_FIELD.fullmatch(value) is not None


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
        if not _REG_NAME.fullmatch(host):
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


def origin_form(path: bytes) -> bytes:
    """*path* (``/p?q``, or ``""``/``?q`` after an absolute-form authority) as
    origin-form, ``/`` for an empty path; 400 unless it is one."""
    if not path or path.startswith(b"?"):
        path = b"/" + path
    if _PATH_QUERY.fullmatch(path) is None:
        raise ProtocolError(400, "malformed request target")
    return path


def split_query(path: bytes) -> tuple[bytes, bytes | None]:
    """An origin-form target as (path, query or None)."""
    path, question, query = path.partition(b"?")
    return path, (query if question else None)


def parse_absolute_target(target: bytes, schemes: tuple[bytes, ...] = (b"http",)) -> Target:
    """An absolute-form target with one of *schemes* (400 for others,
    for credentials in the authority and for a missing host)."""
    scheme, sep, rest = target.partition(b"://")
    scheme = scheme.lower()
    if not sep:
        raise ProtocolError(400, "malformed request target")
    if scheme not in schemes:
        raise ProtocolError(400, f"unsupported URI scheme {scheme.decode('latin-1')!r}")
    slash = rest.find(b"/")
    query = rest.find(b"?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority, path = rest[:cut], rest[cut:]
    if b"@" in authority:
        raise ProtocolError(400, "credentials in a request URI are not allowed")
    host, port = parse_authority(authority, DEFAULT_PORTS[scheme])
    return Target(scheme, host, port, origin_form(path))


def parse_connect_target(target: bytes) -> tuple[bytes, int]:
    """CONNECT's authority-form: host and a port, both required."""
    return parse_authority(target, None)
