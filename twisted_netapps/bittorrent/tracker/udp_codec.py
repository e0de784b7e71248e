"""The UDP tracker protocol (BEP 15), sans-I/O: one datagram in, at most one out.

Connection ids are stateless: an HMAC of the client's address and the current
minute, accepted for that minute and the next (BEP 15 lets a client use an id
for one minute; the server accepts it for two). A datagram too short for its
action, or carrying a bad connection id, gets an error reply when it has a
transaction id to echo and is dropped otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from twisted_netapps.bittorrent.tracker.swarm import AnnounceRequest, Tracker, TrackerRefusal

PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, SCRAPE, ERROR = 0, 1, 2, 3
UDP_EVENTS = {0: "", 1: "completed", 2: "started", 3: "stopped"}
MAX_SCRAPE = 74  # what fits in a 1500-byte packet's reply
_ANNOUNCE = struct.Struct("!QII20s20sQQQIIIiH")  # 98 bytes


class UdpTracker:
    def __init__(self, tracker: Tracker, secret: bytes | None = None) -> None:
        self.tracker = tracker
        self.secret = secret or os.urandom(16)

    def connection_id(self, host: str, port: int, now: float, minute_offset: int = 0) -> int:
        minute = int(now // 60) - minute_offset
        digest = hmac.new(self.secret, f"{host}|{port}|{minute}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def _valid(self, cid: int, host: str, port: int, now: float) -> bool:
        return cid in (self.connection_id(host, port, now), self.connection_id(host, port, now, 1))

    def handle(self, data: bytes, host: str, port: int, now: float) -> bytes | None:
        if len(data) < 16:
            return None
        cid, action, txid = struct.unpack_from("!QII", data)
        if action == CONNECT:
            if cid != PROTOCOL_ID:
                return None
            return struct.pack("!IIQ", CONNECT, txid, self.connection_id(host, port, now))
        if not self._valid(cid, host, port, now):
            return error_reply(txid, "bad connection id")
        try:
            if action == ANNOUNCE:
                return self._announce(data, txid, host, now)
            if action == SCRAPE:
                return self._scrape(data, txid)
        except TrackerRefusal as e:
            return error_reply(txid, e.reason)
        return error_reply(txid, "unknown action")

    def _announce(self, data: bytes, txid: int, host: str, now: float) -> bytes:
        if len(data) < _ANNOUNCE.size:
            raise TrackerRefusal("announce too short")
        (_cid, _action, _txid, info_hash, peer_id, downloaded, left, uploaded,
         event, _ip, _key, numwant, port) = _ANNOUNCE.unpack_from(data)
        if event not in UDP_EVENTS:
            raise TrackerRefusal("unknown event")
        req = AnnounceRequest(
            info_hash=info_hash, peer_id=peer_id, ip=host, port=port, uploaded=uploaded,
            downloaded=downloaded, left=left, event=UDP_EVENTS[event], numwant=numwant,
        )
        reply = self.tracker.announce(req, now)
        v4 = b"".join(
            bytes(int(x) for x in p.ip.split(".")) + struct.pack("!H", p.port)
            for p in reply.peers if p.ip.count(".") == 3
        )
        return struct.pack("!IIIII", ANNOUNCE, txid, reply.interval, reply.incomplete, reply.complete) + v4

    def _scrape(self, data: bytes, txid: int) -> bytes:
        body = data[16:]
        if not body or len(body) % 20 or len(body) // 20 > MAX_SCRAPE:
            raise TrackerRefusal("bad scrape request")
        hashes = [body[i:i + 20] for i in range(0, len(body), 20)]
        entries = self.tracker.scrape(hashes)
        out = [struct.pack("!II", SCRAPE, txid)]
        for ih in hashes:
            e = entries.get(ih)
            out.append(struct.pack("!III", *(e.complete, e.downloaded, e.incomplete) if e else (0, 0, 0)))
        return b"".join(out)


def error_reply(txid: int, message: str) -> bytes:
    return struct.pack("!II", ERROR, txid) + message.encode()[:200]
