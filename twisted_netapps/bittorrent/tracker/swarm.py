"""The tracker's state, sans-I/O: torrents, their peers, announces, scrapes, expiry.

A peer is known by its ``peer_id`` within a torrent; a new ``peer_id`` at an
address (a restarted client) replaces the old entry. Each announce answers
with up to ``numwant`` peers (default 50, the seeds' figure) chosen at random
among the others in the swarm: never the asker itself, and no seeds to a
seed. Peers that miss announces for ``peer_timeout`` seconds are dropped by
:meth:`Tracker.expire`. Time is always passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

EVENTS = ("", "started", "stopped", "completed", "paused")


class TrackerRefusal(Exception):
    """A request the tracker answers with a ``failure reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AnnounceRequest:
    info_hash: bytes
    peer_id: bytes
    ip: str
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: str = ""
    numwant: int | None = None
    compact: bool = True
    no_peer_id: bool = False


@dataclass(frozen=True)
class PeerAddress:
    peer_id: bytes
    ip: str
    port: int


@dataclass(frozen=True)
class AnnounceReply:
    interval: int
    min_interval: int
    complete: int
    incomplete: int
    peers: list[PeerAddress]


@dataclass(frozen=True)
class ScrapeEntry:
    complete: int
    downloaded: int
    incomplete: int


@dataclass
class _Peer:
    address: PeerAddress
    left: int
    last_seen: float


@dataclass
class _Torrent:
    peers: dict[bytes, _Peer] = field(default_factory=dict)
    by_address: dict[tuple[str, int], bytes] = field(default_factory=dict)
    seeders: int = 0
    downloaded: int = 0  # "completed" events seen

    def remove(self, peer_id: bytes) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        self.by_address.pop((peer.address.ip, peer.address.port), None)
        if peer.left == 0:
            self.seeders -= 1


class Tracker:
    def __init__(
        self,
        *,
        interval: int = 120,
        min_interval: int = 30,
        peer_timeout: float = 300.0,
        default_numwant: int = 50,
        max_numwant: int = 200,
        allowed: set[bytes] | None = None,
        max_torrents: int = 10_000,
        max_peers_per_torrent: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        self.interval = interval
        self.min_interval = min_interval
        self.peer_timeout = peer_timeout
        self.default_numwant = default_numwant
        self.max_numwant = max_numwant
        self.allowed = allowed
        self.max_torrents = max_torrents
        self.max_peers_per_torrent = max_peers_per_torrent
        self.rng = rng or random.SystemRandom()
        self.torrents: dict[bytes, _Torrent] = {}

    @property
    def peer_count(self) -> int:
        return sum(len(t.peers) for t in self.torrents.values())

    def announce(self, req: AnnounceRequest, now: float) -> AnnounceReply:
        if len(req.info_hash) != 20:
            raise TrackerRefusal("info_hash must be 20 bytes")
        if len(req.peer_id) != 20:
            raise TrackerRefusal("peer_id must be 20 bytes")
        if not 0 < req.port < 65536:
            raise TrackerRefusal("invalid port")
        if req.event not in EVENTS:
            raise TrackerRefusal(f"unknown event {req.event!r}")
        if min(req.left, req.uploaded, req.downloaded) < 0:
            raise TrackerRefusal("negative counter")
        if self.allowed is not None and req.info_hash not in self.allowed:
            raise TrackerRefusal("torrent not allowed on this tracker")
        torrent = self.torrents.get(req.info_hash)
        if req.event == "stopped":
            # Also fine for a peer we never saw (clients send it blindly on exit).
            if torrent is not None:
                torrent.remove(req.peer_id)
                if not torrent.peers:
                    del self.torrents[req.info_hash]
            return AnnounceReply(self.interval, self.min_interval, *self._counts(torrent), [])
        if torrent is None:
            if len(self.torrents) >= self.max_torrents:
                raise TrackerRefusal("tracker is full")
            torrent = self.torrents[req.info_hash] = _Torrent()
        self._record(torrent, req, now)
        numwant = self.default_numwant if req.numwant is None or req.numwant < 0 else req.numwant
        numwant = min(numwant, self.max_numwant)
        return AnnounceReply(
            self.interval, self.min_interval, *self._counts(torrent), self._pick(torrent, req, numwant)
        )

    def _record(self, torrent: _Torrent, req: AnnounceRequest, now: float) -> None:
        address = (req.ip, req.port)
        previous_id = torrent.by_address.get(address)
        if previous_id is not None and previous_id != req.peer_id:
            torrent.remove(previous_id)  # a restarted client at the same address
        peer = torrent.peers.get(req.peer_id)
        if peer is None:
            if len(torrent.peers) >= self.max_peers_per_torrent:
                raise TrackerRefusal("torrent is full")
            peer = torrent.peers[req.peer_id] = _Peer(PeerAddress(req.peer_id, req.ip, req.port), req.left, now)
            torrent.by_address[address] = req.peer_id
            if req.left == 0:
                torrent.seeders += 1
        else:
            if peer.address.ip != req.ip or peer.address.port != req.port:
                torrent.by_address.pop((peer.address.ip, peer.address.port), None)
                torrent.by_address[address] = req.peer_id
                peer.address = PeerAddress(req.peer_id, req.ip, req.port)
            if (peer.left == 0) != (req.left == 0):
                torrent.seeders += 1 if req.left == 0 else -1
            peer.left = req.left
            peer.last_seen = now
        if req.event == "completed":
            torrent.downloaded += 1

    def _pick(self, torrent: _Torrent, req: AnnounceRequest, numwant: int) -> list[PeerAddress]:
        if numwant == 0:
            return []
        seeding = req.left == 0
        candidates = [
            p.address for pid, p in torrent.peers.items()
            if pid != req.peer_id and not (seeding and p.left == 0)
        ]
        if len(candidates) <= numwant:
            self.rng.shuffle(candidates)
            return candidates
        return self.rng.sample(candidates, numwant)

    @staticmethod
    def _counts(torrent: _Torrent | None) -> tuple[int, int]:
        if torrent is None:
            return 0, 0
        return torrent.seeders, len(torrent.peers) - torrent.seeders

    def scrape(self, info_hashes: list[bytes], *, max_all: int = 1000) -> dict[bytes, ScrapeEntry]:
        """Counts for *info_hashes* (all torrents, up to *max_all*, when empty)."""
        if not info_hashes:
            info_hashes = list(self.torrents)[:max_all]
        result = {}
        for ih in info_hashes:
            if self.allowed is not None and ih not in self.allowed:
                continue
            t = self.torrents.get(ih)
            complete, incomplete = self._counts(t)
            result[ih] = ScrapeEntry(complete, t.downloaded if t else 0, incomplete)
        return result

    def expire(self, now: float) -> int:
        """Drop peers silent for over ``peer_timeout`` seconds; return how many."""
        dropped = 0
        for ih in list(self.torrents):
            torrent = self.torrents[ih]
            for pid in [pid for pid, p in torrent.peers.items() if now - p.last_seen > self.peer_timeout]:
                torrent.remove(pid)
                dropped += 1
            if not torrent.peers:
                del self.torrents[ih]
        return dropped
