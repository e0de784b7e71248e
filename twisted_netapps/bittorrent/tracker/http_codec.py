"""HTTP tracker requests and replies (BEP 3, BEP 23 compact, BEP 7 peers6, BEP 48 scrape), sans-I/O.

``info_hash`` and ``peer_id`` are raw bytes, percent-decoded from the query
string as bytes (never through text); ``+`` is a literal byte, not a space.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from urllib.parse import unquote_to_bytes

from twisted_netapps.bittorrent import bencode
from twisted_netapps.bittorrent.tracker.swarm import (
    AnnounceReply,
    AnnounceRequest,
    ScrapeEntry,
    TrackerRefusal,
)

MAX_QUERY = 4096
MAX_SCRAPE_HASHES = 100


def parse_query(query: bytes) -> list[tuple[bytes, bytes]]:
    if len(query) > MAX_QUERY:
        raise TrackerRefusal("request too long")
    pairs = []
    for part in query.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        pairs.append((unquote_to_bytes(key), unquote_to_bytes(value)))
    return pairs


def _int(params: dict[bytes, bytes], name: bytes, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == b"":
        if default is None and name in (b"port",):
            raise TrackerRefusal(f"missing {name.decode()}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise TrackerRefusal(f"{name.decode()} is not a number") from None


def parse_announce(query: bytes, remote_ip: str, *, trust_ip_param: bool = False) -> AnnounceRequest:
    """An :class:`AnnounceRequest` from ``/announce?...``; :class:`TrackerRefusal` if malformed."""
    params = dict(parse_query(query))
    for name in (b"info_hash", b"peer_id"):
        if name not in params:
            raise TrackerRefusal(f"missing {name.decode()}")
        if len(params[name]) != 20:
            raise TrackerRefusal(f"{name.decode()} must be 20 bytes")
    ip = remote_ip
    if trust_ip_param and params.get(b"ip"):
        try:
            ip = str(ipaddress.ip_address(params[b"ip"].decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            raise TrackerRefusal("ip is not an address") from None
    try:
        event = params.get(b"event", b"").decode("ascii")
    except UnicodeDecodeError:
        raise TrackerRefusal("bad event") from None
    return AnnounceRequest(
        info_hash=params[b"info_hash"],
        peer_id=params[b"peer_id"],
        ip=ip,
        port=_int(params, b"port"),
        uploaded=_int(params, b"uploaded", 0),
        downloaded=_int(params, b"downloaded", 0),
        left=_int(params, b"left", 0),
        event=event,
        numwant=_int(params, b"numwant", -1),
        compact=params.get(b"compact", b"1") != b"0",
        no_peer_id=params.get(b"no_peer_id") == b"1",
    )


def parse_scrape(query: bytes) -> list[bytes]:
    hashes = [v for k, v in parse_query(query) if k == b"info_hash"]
    if any(len(h) != 20 for h in hashes):
        raise TrackerRefusal("info_hash must be 20 bytes")
    if len(hashes) > MAX_SCRAPE_HASHES:
        raise TrackerRefusal("too many info_hash values")
    return hashes


def compact_peers(peers, family: int) -> bytes:
    size = 4 if family == socket.AF_INET else 16
    out = []
    for p in peers:
        try:
            packed = socket.inet_pton(family, p.ip)
        except OSError:
            continue
        if len(packed) == size:
            out.append(packed + struct.pack("!H", p.port))
    return b"".join(out)


def encode_announce(reply: AnnounceReply, req: AnnounceRequest) -> bytes:
    body: dict = {
        "interval": reply.interval,
        "min interval": reply.min_interval,
        "complete": reply.complete,
        "incomplete": reply.incomplete,
    }
    if req.compact:
        v4 = [p for p in reply.peers if ":" not in p.ip]
        v6 = [p for p in reply.peers if ":" in p.ip]
        body["peers"] = compact_peers(v4, socket.AF_INET)
        if v6:
            body["peers6"] = compact_peers(v6, socket.AF_INET6)
    else:
        body["peers"] = [
            {"ip": p.ip, "port": p.port, **({} if req.no_peer_id else {"peer id": p.peer_id})}
            for p in reply.peers
        ]
    return bencode.encode(body)


def encode_scrape(entries: dict[bytes, ScrapeEntry], min_interval: int) -> bytes:
    return bencode.encode({
        "files": {
            ih: {"complete": e.complete, "downloaded": e.downloaded, "incomplete": e.incomplete}
            for ih, e in entries.items()
        },
        "flags": {"min_request_interval": min_interval},
    })


def encode_failure(reason: str) -> bytes:
    return bencode.encode({"failure reason": reason})
