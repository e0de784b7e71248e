"""Announcing to trackers (HTTP, BEP 3/23): build the request, parse the reply; a Twisted client.

Outgoing connections are bound to the peer's one address, so the tracker sees
the address the peer listens on.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

from twisted.internet import defer, endpoints, error
from twisted.web import client
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from twisted_netapps.bittorrent import bencode

MAX_REPLY = 1024 * 1024


class AnnounceError(Exception):
    """The tracker could not be reached or refused us (its failure reason)."""


@dataclass(frozen=True)
class AnnounceResult:
    interval: int
    peers: list[tuple[str, int]]
    complete: int | None = None
    incomplete: int | None = None


def announce_url(base: str, *, info_hash: bytes, peer_id: bytes, port: int, uploaded: int, downloaded: int,
                 left: int, event: str = "", numwant: int = 50) -> str:
    params = [
        ("info_hash", quote_from_bytes(info_hash, safe="")),
        ("peer_id", quote_from_bytes(peer_id, safe="")),
        ("port", str(port)), ("uploaded", str(uploaded)), ("downloaded", str(downloaded)),
        ("left", str(left)), ("compact", "1"), ("numwant", str(numwant)),
    ]
    if event:
        params.append(("event", event))
    query = "&".join(f"{k}={v}" for k, v in params)
    return f"{base}{'&' if '?' in base else '?'}{query}"


def parse_reply(body: bytes) -> AnnounceResult:
    try:
        reply = bencode.decode(body, max_items=100_000)
    except bencode.BencodeError as e:
        raise AnnounceError(f"tracker reply is not bencoded: {e}") from None
    if not isinstance(reply, dict):
        raise AnnounceError("tracker reply is not a dictionary")
    if b"failure reason" in reply:
        reason = reply[b"failure reason"]
        raise AnnounceError(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else "failure")
    peers: list[tuple[str, int]] = []
    raw = reply.get(b"peers", b"")
    if isinstance(raw, bytes):
        for i in range(0, len(raw) - len(raw) % 6, 6):
            peers.append((socket.inet_ntoa(raw[i:i + 4]), struct.unpack("!H", raw[i + 4:i + 6])[0]))
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict) and isinstance(entry.get(b"ip"), bytes) and isinstance(entry.get(b"port"), int):
                peers.append((entry[b"ip"].decode("ascii", "replace"), entry[b"port"]))
    raw6 = reply.get(b"peers6", b"")
    if isinstance(raw6, bytes):
        for i in range(0, len(raw6) - len(raw6) % 18, 18):
            peers.append((socket.inet_ntop(socket.AF_INET6, raw6[i:i + 16]),
                          struct.unpack("!H", raw6[i + 16:i + 18])[0]))
    interval = reply.get(b"interval", 1800)
    if not isinstance(interval, int) or interval <= 0:
        interval = 1800
    counts = [reply.get(k) if isinstance(reply.get(k), int) else None for k in (b"complete", b"incomplete")]
    return AnnounceResult(interval, peers, *counts)


@implementer(IAgentEndpointFactory)
class _BoundEndpoints:
    def __init__(self, reactor, bind: str | None, timeout: float) -> None:
        self.reactor = reactor
        self.bind = bind
        self.timeout = timeout

    def endpointForURI(self, uri):
        bind = (self.bind, 0) if self.bind else None
        return endpoints.HostnameEndpoint(
            self.reactor, uri.host, uri.port, timeout=self.timeout, bindAddress=bind
        )


class HttpAnnouncer:
    def __init__(self, reactor, bind: str | None, timeout: float = 15.0) -> None:
        self.reactor = reactor
        self.timeout = timeout
        # A persistent pool: one connection per tracker, reused across announces.
        pool = client.HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 1
        self.pool = pool
        self.agent = client.Agent.usingEndpointFactory(reactor, _BoundEndpoints(reactor, bind, timeout), pool=pool)

    async def announce(self, base: str, **params) -> AnnounceResult:
        """Announce *params* (see :func:`announce_url`) to the tracker at *base*."""
        if not base.startswith(("http://", "https://")):
            raise AnnounceError(f"unsupported tracker {base.split(':', 1)[0]}://")
        d = self.agent.request(b"GET", announce_url(base, **params).encode("ascii"))
        d.addTimeout(self.timeout, self.reactor)
        try:
            response = await d
            if response.length is not client.UNKNOWN_LENGTH and response.length > MAX_REPLY:
                raise AnnounceError("tracker reply too large")
            body = await client.readBody(response)
        except defer.TimeoutError:
            raise AnnounceError("tracker did not answer in time") from None
        except (error.ConnectError, error.DNSLookupError, client.ResponseFailed, client.PartialDownloadError) as e:
            raise AnnounceError(f"tracker unreachable: {e.__class__.__name__}") from None
        if response.code != 200:
            raise AnnounceError(f"tracker answered HTTP {response.code}")
        return parse_reply(body)
