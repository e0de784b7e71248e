"""Super-seeding (BEP 16) for an initial seed, sans-I/O.

The seed hides what it has and *offers* each peer a few pieces (``have``
messages) at a time, preferring pieces never offered before, so the first
copy of every piece goes out once and the leechers spread it. A peer's offer
is renewed when it reports having the piece, or when another peer does (the
piece has spread). A piece is offered at most twice, the second time only
while fewer than two neighbours hold it: the seed's upload goes where only it
can help. Two offers per peer keep the seed busy while a peer verifies and
fsyncs a piece before announcing it.
"""

from __future__ import annotations

import random
from typing import Hashable, Sequence

OFFERS_PER_PEER = 2
MAX_OFFERS_PER_PIECE = 2


class SuperSeeder:
    def __init__(self, piece_count: int, rng: random.Random | None = None) -> None:
        self.piece_count = piece_count
        self.rng = rng or random.Random()
        self.offered_count = [0] * piece_count
        self.offers: dict[Hashable, list[int]] = {}

    def top_up(self, peer: Hashable, peer_bits: bytearray, availability: Sequence[int]) -> list[int]:
        """New pieces to offer *peer* (send ``have`` for each)."""
        current = self.offers.setdefault(peer, [])
        current[:] = [i for i in current if not peer_bits[i]]
        new = []
        while len(current) < OFFERS_PER_PEER:
            index = self._choose(peer_bits, availability, set(current))
            if index is None:
                break
            self.offered_count[index] += 1
            current.append(index)
            new.append(index)
        return new

    def _choose(self, peer_bits, availability, exclude: set[int]) -> int | None:
        candidates = [i for i in range(self.piece_count) if not peer_bits[i] and i not in exclude]
        pool = [i for i in candidates if self.offered_count[i] == 0]
        if not pool:
            pool = [i for i in candidates
                    if availability[i] < 2 and self.offered_count[i] < MAX_OFFERS_PER_PIECE]
        if not pool:
            return None
        in_flight = {i for offers in self.offers.values() for i in offers}
        pool = [i for i in pool if i not in in_flight] or pool
        least = min((self.offered_count[i], availability[i]) for i in pool)
        return self.rng.choice([i for i in pool if (self.offered_count[i], availability[i]) == least])

    def spread(self, index: int) -> list[Hashable]:
        """Piece *index* was announced by a peer: the peers whose offers it settles."""
        settled = []
        for peer, offers in self.offers.items():
            if index in offers:
                offers.remove(index)
                settled.append(peer)
        return settled

    def withdraw(self, peer: Hashable, peer_bits: bytearray) -> None:
        """*peer* will not be served (choked, gone): undelivered offers may go to others."""
        for index in self.offers.pop(peer, []):
            if not peer_bits[index]:
                self.offered_count[index] = max(0, self.offered_count[index] - 1)

    def wanting(self) -> list[Hashable]:
        """Peers holding fewer offers than they could."""
        return [peer for peer, offers in self.offers.items() if len(offers) < OFFERS_PER_PEER]
