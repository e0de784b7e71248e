"""Which blocks to ask a peer for: random first, rarest first, strict priority, endgame.

- *Strict priority*: blocks of pieces already started come before any new
  piece, so pieces complete (and can be shared) as soon as possible.
- *Random first*: until ``random_first`` pieces are complete a new piece is
  picked at random among those the peer has (a newcomer needs something to
  trade quickly; the rarest piece may be slow to get).
- *Rarest first*: after that, the new piece is one with the fewest copies
  among the neighbours' bitfields and haves, ties broken at random (the
  seeds: this equalises the copies of every piece in the torrent).
- *Endgame*: once every missing block has been requested, blocks still in
  flight are requested again from other peers (at most ``endgame_copies``
  requests per block); the caller cancels the duplicates when a copy arrives.

Plain data and arithmetic; the caller owns peers and buffers.
"""

from __future__ import annotations

import random
from typing import Hashable

from twisted_netapps.bittorrent.metainfo import BLOCK_SIZE


class PeerPieces:
    """What one neighbour has: a bytearray of 0/1 per piece, or everything."""

    __slots__ = ("bits", "count", "piece_count")

    def __init__(self, piece_count: int) -> None:
        self.bits = bytearray(piece_count)
        self.count = 0
        self.piece_count = piece_count

    @property
    def complete(self) -> bool:
        return self.count == self.piece_count

    def __contains__(self, index: int) -> bool:
        return bool(self.bits[index])


class _Partial:
    __slots__ = ("index", "size", "nblocks", "received", "requesters", "unrequested", "done")

    def __init__(self, index: int, size: int) -> None:
        self.index = index
        self.size = size
        self.nblocks = (size + BLOCK_SIZE - 1) // BLOCK_SIZE
        self.received = bytearray(self.nblocks)
        self.requesters: list[list[Hashable]] = [[] for _ in range(self.nblocks)]
        self.unrequested = list(range(self.nblocks - 1, -1, -1))  # pop() gives the lowest
        self.done = 0

    def block(self, b: int) -> tuple[int, int, int]:
        begin = b * BLOCK_SIZE
        return self.index, begin, min(BLOCK_SIZE, self.size - begin)


class PiecePicker:
    def __init__(
        self,
        piece_count: int,
        piece_length: int,
        total_length: int,
        *,
        rng: random.Random | None = None,
        random_first: int = 4,
        endgame_copies: int = 2,
    ) -> None:
        self.piece_count = piece_count
        self.piece_length = piece_length
        self.total_length = total_length
        self.rng = rng or random.Random()
        self.random_first = random_first
        self.endgame_copies = endgame_copies
        self.have = bytearray(piece_count)
        self.have_count = 0
        self.availability = [0] * piece_count
        self.partials: dict[int, _Partial] = {}
        self.verifying: set[int] = set()  # all blocks in, hash check pending

    def piece_size(self, index: int) -> int:
        if index == self.piece_count - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    @property
    def complete(self) -> bool:
        return self.have_count == self.piece_count

    def wanted(self, index: int) -> bool:
        return not self.have[index] and index not in self.verifying

    # -- availability ------------------------------------------------------------
    def peer_has(self, pieces: PeerPieces, index: int) -> None:
        if not pieces.bits[index]:
            pieces.bits[index] = 1
            pieces.count += 1
            self.availability[index] += 1

    def peer_has_all(self, pieces: PeerPieces) -> None:
        for i in range(self.piece_count):
            self.peer_has(pieces, i)

    def peer_bitfield(self, pieces: PeerPieces, bits: bytes) -> None:
        for byte_index, byte in enumerate(bits):
            if not byte:
                continue
            base = byte_index * 8
            for bit in range(8):
                if byte & (0x80 >> bit) and base + bit < self.piece_count:
                    self.peer_has(pieces, base + bit)

    def peer_gone(self, pieces: PeerPieces) -> None:
        availability = self.availability
        for i, v in enumerate(pieces.bits):
            if v:
                availability[i] -= 1

    def interesting(self, pieces: PeerPieces) -> bool:
        """Whether the peer has a piece we still want."""
        if self.complete:
            return False
        have, verifying = self.have, self.verifying
        bits = pieces.bits
        return any(bits[i] and not have[i] and i not in verifying for i in range(self.piece_count))

    # -- our progress ------------------------------------------------------------
    def set_have(self, index: int) -> None:
        self.partials.pop(index, None)
        self.verifying.discard(index)
        if not self.have[index]:
            self.have[index] = 1
            self.have_count += 1

    def piece_failed(self, index: int) -> None:
        """The hash check failed: fetch the whole piece again."""
        self.verifying.discard(index)
        self.partials.pop(index, None)

    def block_received(self, index: int, begin: int, peer: Hashable) -> tuple[bool, list[Hashable]]:
        """Record a block; return (new, other peers it was also requested from)."""
        partial = self.partials.get(index)
        if partial is None or begin % BLOCK_SIZE:
            return False, []
        b = begin // BLOCK_SIZE
        if b >= partial.nblocks or partial.received[b]:
            return False, []
        partial.received[b] = 1
        partial.done += 1
        others = [p for p in partial.requesters[b] if p != peer]
        partial.requesters[b] = []
        if b in partial.unrequested:  # an unrequested block arrived (allowed-fast, late)
            partial.unrequested.remove(b)
        if partial.done == partial.nblocks:
            del self.partials[index]
            self.verifying.add(index)
        return True, others

    def block_cancelled(self, index: int, begin: int, peer: Hashable) -> None:
        """A request will not be answered (choked, rejected, peer gone): it may go elsewhere."""
        partial = self.partials.get(index)
        if partial is None:
            return
        b = begin // BLOCK_SIZE
        if b < partial.nblocks and peer in partial.requesters[b]:
            partial.requesters[b].remove(peer)
            if not partial.requesters[b] and not partial.received[b] and b not in partial.unrequested:
                partial.unrequested.append(b)
                partial.unrequested.sort(reverse=True)

    # -- picking -------------------------------------------------------------------
    def pick(self, peer: Hashable, pieces: PeerPieces, count: int,
             allowed: set[int] | None = None) -> list[tuple[int, int, int]]:
        """Up to *count* blocks to request from *peer* (whose pieces are *pieces*).

        *allowed* restricts the choice (BEP 6 allowed-fast pieces while choked).
        """
        result: list[tuple[int, int, int]] = []
        bits = pieces.bits
        # 1. strict priority: pieces already started, most complete first.
        started = sorted(self.partials.values(), key=lambda p: p.nblocks - p.done - len(p.unrequested))
        for partial in started:
            if not bits[partial.index] or (allowed is not None and partial.index not in allowed):
                continue
            while partial.unrequested and len(result) < count:
                b = partial.unrequested.pop()
                partial.requesters[b].append(peer)
                result.append(partial.block(b))
            if len(result) >= count:
                return result
        # 2. new pieces: random first, then rarest first.
        while len(result) < count:
            index = self._new_piece(bits, allowed)
            if index is None:
                break
            partial = self.partials[index] = _Partial(index, self.piece_size(index))
            while partial.unrequested and len(result) < count:
                b = partial.unrequested.pop()
                partial.requesters[b].append(peer)
                result.append(partial.block(b))
        # 3. endgame: everything is requested; ask this peer too.
        if len(result) < count and self.in_endgame():
            for partial in started:
                if not bits[partial.index] or (allowed is not None and partial.index not in allowed):
                    continue
                for b in range(partial.nblocks):
                    requesters = partial.requesters[b]
                    if partial.received[b] or peer in requesters or len(requesters) >= self.endgame_copies:
                        continue
                    requesters.append(peer)
                    result.append(partial.block(b))
                    if len(result) >= count:
                        return result
        return result

    def in_endgame(self) -> bool:
        """Every missing block is requested or received (nothing new left to ask for)."""
        if any(p.unrequested for p in self.partials.values()):
            return False
        started = len(self.partials) + len(self.verifying) + self.have_count
        return started >= self.piece_count

    def _new_piece(self, bits: bytearray, allowed: set[int] | None) -> int | None:
        have, partials, verifying = self.have, self.partials, self.verifying
        candidates = range(self.piece_count) if allowed is None else sorted(allowed)
        if self.have_count < self.random_first:
            choices = [i for i in candidates
                       if bits[i] and not have[i] and i not in partials and i not in verifying]
            return self.rng.choice(choices) if choices else None
        availability = self.availability
        best = None
        choices = []
        for i in candidates:
            if bits[i] and not have[i] and i not in partials and i not in verifying:
                a = availability[i]
                if best is None or a < best:
                    best, choices = a, [i]
                elif a == best:
                    choices.append(i)
        return self.rng.choice(choices) if choices else None
