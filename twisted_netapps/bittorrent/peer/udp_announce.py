"""Announcing to UDP trackers (BEP 15): connect, then announce, each retried on timeout."""

from __future__ import annotations

import os
import socket
import struct
from urllib.parse import urlsplit

from twisted.internet import defer, protocol

from twisted_netapps.bittorrent.peer.announce import AnnounceError, AnnounceResult

PROTOCOL_ID = 0x41727101980
EVENTS = {"": 0, "completed": 1, "started": 2, "stopped": 3}


class _Client(protocol.DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.waiting: dict[int, defer.Deferred] = {}

    def datagramReceived(self, data: bytes, addr) -> None:
        if len(data) < 8:
            return
        txid = struct.unpack_from("!I", data, 4)[0]
        d = self.waiting.pop(txid, None)
        if d is not None:
            d.callback(data)


class UdpAnnouncer:
    def __init__(self, reactor, bind: str | None, timeout: float = 3.0, tries: int = 3) -> None:
        self.reactor = reactor
        self.bind = bind or ""
        self.timeout = timeout
        self.tries = tries

    async def _exchange(self, client: _Client, port, address, body_after_txid) -> bytes:
        for attempt in range(self.tries):
            txid = struct.unpack("!I", os.urandom(4))[0]
            d = defer.Deferred()
            client.waiting[txid] = d
            port.write(body_after_txid(txid), address)
            d.addTimeout(self.timeout * (attempt + 1), self.reactor)
            try:
                reply = await d
            except defer.TimeoutError:
                client.waiting.pop(txid, None)
                continue
            action = struct.unpack_from("!I", reply)[0]
            if action == 3:
                raise AnnounceError(reply[8:].decode("utf-8", "replace") or "tracker error")
            return reply
        raise AnnounceError("UDP tracker did not answer")

    async def announce(self, url: str, *, info_hash: bytes, peer_id: bytes, port: int, uploaded: int,
                       downloaded: int, left: int, event: str = "", numwant: int = 50) -> AnnounceResult:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise AnnounceError(f"bad UDP tracker URL {url!r}")
        try:
            host = socket.inet_ntoa(socket.inet_aton(parts.hostname))
        except OSError:
            host = await self.reactor.resolve(parts.hostname)
        client = _Client()
        udp = self.reactor.listenUDP(0, client, interface=self.bind)
        try:
            address = (host, parts.port)
            reply = await self._exchange(client, udp, address,
                                         lambda txid: struct.pack("!QII", PROTOCOL_ID, 0, txid))
            if len(reply) < 16:
                raise AnnounceError("short UDP connect reply")
            connection_id = struct.unpack_from("!Q", reply, 8)[0]
            key = struct.unpack("!I", peer_id[-4:])[0]

            def announce_packet(txid: int) -> bytes:
                return struct.pack("!QII20s20sQQQIIIiH", connection_id, 1, txid, info_hash, peer_id,
                                   downloaded, left, uploaded, EVENTS.get(event, 0), 0, key, numwant, port)

            reply = await self._exchange(client, udp, address, announce_packet)
            if len(reply) < 20:
                raise AnnounceError("short UDP announce reply")
            interval, leechers, seeders = struct.unpack_from("!III", reply, 8)
            peers = [
                (socket.inet_ntoa(reply[i:i + 4]), struct.unpack_from("!H", reply, i + 4)[0])
                for i in range(20, len(reply) - 5, 6)
            ]
            return AnnounceResult(interval or 1800, peers, seeders, leechers)
        finally:
            await udp.stopListening()
