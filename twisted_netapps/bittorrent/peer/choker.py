"""Whom to upload to: the choking policies, driven by the caller's clock.

The seeds' *tit-for-tat* (:data:`TIT_FOR_TAT`, the default):

- Four *regular* unchoke slots go to the interested peers currently sending
  us data at the highest rate (when seeding: the peers we upload to fastest),
  re-evaluated every 10 s.
- One *optimistic* unchoke goes to a random interested peer, rotated every
  30 s; newly connected peers are three times as likely to be picked (they
  have nothing to trade yet).
- *Anti-snubbing*: a peer that has sent us nothing for a minute while it
  unchoked us and we wanted its data loses its claim to a regular slot.
- Between re-evaluations a free slot (a peer left or lost interest, or at
  start-up) is filled at once rather than left idle for up to 10 s.

*libtorrent-style* (:data:`LIBTORRENT`, libtorrent's defaults: 8 unchoke
slots, a fifth as many optimistic ones, re-evaluated every 15 s, optimistic
every 30 s) differs when seeding: it goes *round-robin* -- a peer keeps its
slot until it has received ``seed_quota`` pieces' worth since it was
unchoked, then the peers that waited longest come first -- instead of
favouring the peers we upload to fastest.

:meth:`Choker.update` returns the set of peers to have unchoked; the caller
sends choke/unchoke messages for the differences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Hashable

REGULAR_SLOTS = 4
RECHOKE_INTERVAL = 10.0
OPTIMISTIC_INTERVAL = 30.0
NEW_PEER_AGE = 60.0
NEW_PEER_WEIGHT = 3


@dataclass(frozen=True)
class ChokePolicy:
    name: str
    slots: int  # regular unchoke slots
    optimistic: int  # optimistic unchoke slots
    interval: float  # seconds between re-evaluations of the regular slots
    optimistic_interval: float
    round_robin_seeding: bool = False
    seed_quota: int = 20  # round-robin: pieces a peer receives before it yields its slot


TIT_FOR_TAT = ChokePolicy("tit-for-tat", REGULAR_SLOTS, 1, RECHOKE_INTERVAL, OPTIMISTIC_INTERVAL)
LIBTORRENT = ChokePolicy("libtorrent", 8, 1, 15.0, 30.0, round_robin_seeding=True)
POLICIES = {p.name: p for p in (TIT_FOR_TAT, LIBTORRENT)}


@dataclass
class ChokeCandidate:
    key: Hashable
    interested: bool
    download_rate: float  # from the peer to us
    upload_rate: float  # from us to the peer
    connected_at: float
    snubbed: bool = False
    uploaded: int = 0  # bytes we have sent it in all (round-robin seeding)


class Choker:
    def __init__(
        self,
        policy: ChokePolicy = TIT_FOR_TAT,
        *,
        piece_length: int = 256 * 1024,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.slots = policy.slots
        self.interval = policy.interval
        self.optimistic_interval = policy.optimistic_interval
        self.quota = policy.seed_quota * piece_length
        self.rng = rng or random.Random()
        self.regular: set[Hashable] = set()
        self.optimists: list[Hashable] = []
        self.next_rechoke: float | None = None
        self.next_optimistic: float | None = None
        self._unchoked_at: dict[Hashable, tuple[float, int]] = {}  # key -> (when, uploaded then)
        self._last_unchoked: dict[Hashable, float] = {}

    @property
    def optimistic(self) -> Hashable | None:
        return self.optimists[0] if self.optimists else None

    @property
    def unchoked(self) -> set[Hashable]:
        return self.regular | set(self.optimists)

    def update(self, now: float, peers: list[ChokeCandidate], *, seeding: bool) -> set[Hashable]:
        """The peers to keep unchoked now (re-evaluating if a period ended)."""
        by_key = {p.key: p for p in peers}
        interested = [p for p in peers if p.interested]
        # Forget peers that left or lost interest.
        self.regular = {k for k in self.regular if k in by_key and by_key[k].interested}
        self.optimists = [k for k in self.optimists if k in by_key and by_key[k].interested]
        if self.next_rechoke is None or now >= self.next_rechoke:
            self.next_rechoke = now + self.interval
            self.regular = set(self._best(interested, seeding, self.slots, now))
        elif len(self.regular) < self.slots:
            free = [p for p in interested if p.key not in self.regular and p.key not in self.optimists]
            self.regular |= set(self._best(free, seeding, self.slots - len(self.regular), now))
        self.optimists = [k for k in self.optimists if k not in self.regular]
        if len(self.optimists) < self.policy.optimistic or self.next_optimistic is None \
                or now >= self.next_optimistic:
            self.next_optimistic = now + self.optimistic_interval
            pool = [p for p in interested if p.key not in self.regular]
            self.optimists = []
            while len(self.optimists) < self.policy.optimistic and pool:
                key = self._random_pick(pool, now)
                self.optimists.append(key)
                pool = [p for p in pool if p.key != key]
        unchoked = self.unchoked
        for p in peers:
            if p.key in unchoked and p.key not in self._unchoked_at:
                self._unchoked_at[p.key] = (now, p.uploaded)
            elif p.key not in unchoked and p.key in self._unchoked_at:
                del self._unchoked_at[p.key]
                self._last_unchoked[p.key] = now
        for key in [k for k in self._unchoked_at if k not in by_key]:
            del self._unchoked_at[key]
        return unchoked

    def _best(self, peers: list[ChokeCandidate], seeding: bool, n: int, now: float) -> list[Hashable]:
        # Random order first so that equal rates (everyone at 0 at start) tie fairly.
        shuffled = list(peers)
        self.rng.shuffle(shuffled)
        if seeding and self.policy.round_robin_seeding:
            ranked = sorted(shuffled, key=lambda p: self._round_robin_rank(p, now))
        elif seeding:
            ranked = sorted(shuffled, key=lambda p: -p.upload_rate)
        else:
            ranked = sorted(shuffled, key=lambda p: (p.snubbed, -p.download_rate))
        return [p.key for p in ranked[:n]]

    def _round_robin_rank(self, peer: ChokeCandidate, now: float) -> tuple:
        since = self._unchoked_at.get(peer.key)
        if since is not None and peer.uploaded - since[1] < self.quota:
            return (0, since[0])  # unchoked and still short of its quota: keeps its slot
        # everyone else: the longest wait first (never unchoked: first of all)
        return (1, self._last_unchoked.get(peer.key, float("-inf")) if since is None else now)

    def _random_pick(self, peers: list[ChokeCandidate], now: float) -> Hashable:
        weights = [NEW_PEER_WEIGHT if now - p.connected_at < NEW_PEER_AGE else 1 for p in peers]
        return self.rng.choices(peers, weights)[0].key
