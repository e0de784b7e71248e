"""Tit-for-tat, exactly as the seeds give it, driven by the caller's clock.

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


@dataclass
class ChokeCandidate:
    key: Hashable
    interested: bool
    download_rate: float  # from the peer to us
    upload_rate: float  # from us to the peer
    connected_at: float
    snubbed: bool = False


class Choker:
    def __init__(
        self,
        *,
        slots: int = REGULAR_SLOTS,
        interval: float = RECHOKE_INTERVAL,
        optimistic_interval: float = OPTIMISTIC_INTERVAL,
        rng: random.Random | None = None,
    ) -> None:
        self.slots = slots
        self.interval = interval
        self.optimistic_interval = optimistic_interval
        self.rng = rng or random.Random()
        self.regular: set[Hashable] = set()
        self.optimistic: Hashable | None = None
        self.next_rechoke: float | None = None
        self.next_optimistic: float | None = None

    @property
    def unchoked(self) -> set[Hashable]:
        return self.regular | ({self.optimistic} if self.optimistic is not None else set())

    def update(self, now: float, peers: list[ChokeCandidate], *, seeding: bool) -> set[Hashable]:
        """The peers to keep unchoked now (re-evaluating if a period ended)."""
        by_key = {p.key: p for p in peers}
        interested = [p for p in peers if p.interested]
        # Forget peers that left or lost interest.
        self.regular = {k for k in self.regular if k in by_key and by_key[k].interested}
        if self.optimistic is not None and not (self.optimistic in by_key and by_key[self.optimistic].interested):
            self.optimistic = None
        if self.next_rechoke is None or now >= self.next_rechoke:
            self.next_rechoke = now + self.interval
            self.regular = set(self._best(interested, seeding, self.slots))
        elif len(self.regular) < self.slots:
            free = [p for p in interested if p.key not in self.regular and p.key != self.optimistic]
            self.regular |= set(self._best(free, seeding, self.slots - len(self.regular)))
        if self.optimistic in self.regular:
            self.optimistic = None
        if self.optimistic is None or self.next_optimistic is None or now >= self.next_optimistic:
            self.next_optimistic = now + self.optimistic_interval
            self.optimistic = self._random_pick(
                [p for p in interested if p.key not in self.regular], now
            )
        return self.unchoked

    def _best(self, peers: list[ChokeCandidate], seeding: bool, n: int) -> list[Hashable]:
        # Random order first so that equal rates (everyone at 0 at start) tie fairly.
        shuffled = list(peers)
        self.rng.shuffle(shuffled)
        if seeding:
            ranked = sorted(shuffled, key=lambda p: -p.upload_rate)
        else:
            ranked = sorted(shuffled, key=lambda p: (p.snubbed, -p.download_rate))
        return [p.key for p in ranked[:n]]

    def _random_pick(self, peers: list[ChokeCandidate], now: float) -> Hashable | None:
        if not peers:
            return None
        weights = [NEW_PEER_WEIGHT if now - p.connected_at < NEW_PEER_AGE else 1 for p in peers]
        return self.rng.choices(peers, weights)[0].key
