"""Hot bodies kept in memory: hits on small objects need no disk access at all.

An LRU of complete bodies no larger than ``max_object`` bytes, bounded to
``max_bytes`` in total. Larger objects are only ever on disk and streamed
from there in chunks.
"""

from __future__ import annotations

from collections import OrderedDict


class MemoryBodies:
    def __init__(self, max_bytes: int, max_object: int) -> None:
        self.max_bytes = max_bytes
        self.max_object = max_object
        self.size = 0
        self._bodies: OrderedDict[str, bytes] = OrderedDict()

    def holds(self, entry_id: str) -> bool:
        """Whether the body is in memory (without counting as a use)."""
        return entry_id in self._bodies

    def get(self, entry_id: str) -> bytes | None:
        body = self._bodies.get(entry_id)
        if body is not None:
            self._bodies.move_to_end(entry_id)
        return body

    def fits(self, length: int) -> bool:
        return length <= self.max_object and length <= self.max_bytes

    def put(self, entry_id: str, body: bytes) -> None:
        if not self.fits(len(body)):
            return
        self.discard(entry_id)
        self._bodies[entry_id] = body
        self.size += len(body)
        while self.size > self.max_bytes:
            _old, evicted = self._bodies.popitem(last=False)
            self.size -= len(evicted)

    def discard(self, entry_id: str) -> None:
        body = self._bodies.pop(entry_id, None)
        if body is not None:
            self.size -= len(body)
