"""Network addresses as configured and as seen on connections, in one place.

- :func:`parse_host_port`: ``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6
  address from a config value -> ``(ip, port)``;
- :func:`host_of` / :func:`format_peer`: the host, and ``host:port`` for log
  lines, of any Twisted address (IPv4/IPv6/UNIX);
- :func:`is_loopback`: whether a peer is on this host (UNIX sockets are);
- :func:`same_host`: whether two IP addresses name one host (FTP's data
  connections must come from, and go to, the control connection's peer).

No Twisted imports: addresses are duck-typed (``.host``/``.port``).
"""

from __future__ import annotations

import ipaddress


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``"127.0.0.1:5301"`` / ``"[::1]:53"`` / ``"::1"`` / ``"127.0.0.1"`` -> (ip, port).

    Raises ValueError (with a message fit for a config error) for a name
    instead of an address, a bad port or a port out of range.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if port_text is None:
        return host, default_port
    if not port_text.isdigit():
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range (1-65535)")
    return host, port


def host_of(address) -> str:
    """The host part of a Twisted address; ``"unix"`` for a UNIX socket peer."""
    host = getattr(address, "host", None)
    if host is None:
        return "unix"
    return host


def format_peer(address) -> str:
    """``host:port`` (``[v6]:port`` for IPv6) for log lines."""
    host = getattr(address, "host", None)
    if host is None:
        return f"unix:{getattr(address, 'name', '') or '?'}"
    port = getattr(address, "port", None)
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def is_loopback(address) -> bool:
    """Whether *address* (a Twisted address) is this host: loopback IPs and UNIX sockets."""
    host = getattr(address, "host", None)
    if host is None:  # UNIX socket: local by definition
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def same_host(a: str, b: str) -> bool:
    """Whether two textual IP addresses name the same host (an IPv4-mapped IPv6
    address equals its IPv4 form; a zone suffix is ignored; names never match)."""
    try:
        x, y = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False
    return (getattr(x, "ipv4_mapped", None) or x) == (getattr(y, "ipv4_mapped", None) or y)
