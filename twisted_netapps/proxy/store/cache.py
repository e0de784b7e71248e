"""The cache: an index of entries by key and variant, bounded by size with LRU eviction.

Entries are found by effective URI, then by Vary (RFC 9111 4.1): of the
variants that match a request, the most recent by Date is used (4). A new
response for a key replaces the stored variants the same request would have
selected, and keeps the others (``Foo: 1`` and ``Foo: 2`` live side by
side).

Size: the sum of entry sizes stays under ``max_bytes``; the least recently
used entries go first, their files removed in the disk pool.

Bodies: small ones come from :class:`MemoryBodies`; otherwise from disk,
checked against their CRC (a corrupt entry is dropped and the request is a
miss). Entries loaded at start are checked once before their first use.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet import defer
from twisted.logger import Logger

from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.vary import vary_matches
from twisted_netapps.proxy.store.disk import DiskStore
from twisted_netapps.proxy.store.entry import CorruptEntry, Entry
from twisted_netapps.proxy.store.memory import MemoryBodies

log = Logger(namespace="netapps.proxy")


class Cache:
    def __init__(self, disk: DiskStore, memory: MemoryBodies, max_bytes: int, max_object: int) -> None:
        self.disk = disk
        self.memory = memory
        self.max_bytes = max_bytes
        self.max_object = max_object
        self.size = 0
        # key -> the entry, or a list of them when Vary made several variants
        # (a list per key would be one more object per entry for the GC to walk)
        self._by_key: dict[bytes, Entry | list[Entry]] = {}
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        self.loaded = False
        self._waiting: list = []
        self.corrupt_removed = 0

    def __len__(self) -> int:
        return len(self._lru)

    # -- start-up -----------------------------------------------------------

    @defer.inlineCallbacks
    def load(self):
        """Rebuild the index from disk (entries stored meanwhile win).

        Requests that arrive meanwhile wait for it (:meth:`when_loaded`): a
        stored response must not look like a miss just after a restart.
        """
        try:
            entries, removed = yield self.disk.scan()
        except BaseException:
            self._set_loaded()  # serve (as misses) rather than hold requests for ever
            raise
        self.corrupt_removed += removed
        for entry in entries:
            if entry.id not in self._lru:
                self._insert(entry, replace=False)
                self._lru.move_to_end(entry.id, last=False)  # older than anything stored meanwhile
        self._evict()
        self._set_loaded()
        return len(entries)

    def _set_loaded(self) -> None:
        self.loaded = True
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    def when_loaded(self, callback) -> None:
        """Call *callback* once the index is loaded (at once if it is)."""
        if self.loaded:
            callback()
        else:
            self._waiting.append(callback)

    # -- lookups ------------------------------------------------------------

    def _variants(self, key: bytes) -> list[Entry]:
        stored = self._by_key.get(key)
        if stored is None:
            return []
        return [stored] if type(stored) is Entry else list(stored)

    def candidates(self, key: bytes, request_headers: Headers) -> list[Entry]:
        """Stored responses whose Vary matches the request, most recent first."""
        found = [e for e in self._variants(key) if vary_matches(e.vary, e.vary_values, request_headers)]
        found.sort(key=lambda e: (e.date, e.response_time), reverse=True)
        return found

    def select(self, key: bytes, request_headers: Headers) -> Entry | None:
        stored = self._by_key.get(key)
        if stored is None:
            return None
        if type(stored) is Entry:
            if not stored.vary or vary_matches(stored.vary, stored.vary_values, request_headers):
                return stored
            return None
        found = self.candidates(key, request_headers)
        return found[0] if found else None

    def touch(self, entry: Entry) -> None:
        if entry.id in self._lru:
            self._lru.move_to_end(entry.id)

    def contains(self, entry: Entry) -> bool:
        return self._lru.get(entry.id) is entry

    def most_recent(self, count: int) -> list[Entry]:
        """Up to *count* entries, the most recently used first."""
        found = []
        for entry in reversed(self._lru.values()):
            if len(found) >= count:
                break
            found.append(entry)
        return found

    # -- changes ------------------------------------------------------------

    def add(self, entry: Entry, request_headers: Headers) -> None:
        """Store *entry*, replacing what the storing request would have selected."""
        if entry.key in self._by_key:
            for old in self.candidates(entry.key, request_headers):
                self.remove(old)
        self._insert(entry, replace=True)
        self._evict(keep=entry)

    def _insert(self, entry: Entry, replace: bool) -> None:
        stored = self._by_key.get(entry.key)
        if stored is None:
            self._by_key[entry.key] = entry
        elif type(stored) is Entry:
            self._by_key[entry.key] = [stored, entry]
        else:
            stored.append(entry)
        self._lru[entry.id] = entry
        self.size += entry.size

    def remove(self, entry: Entry, *, delete_files: bool = True) -> None:
        if self._lru.pop(entry.id, None) is None:
            return
        self.size -= entry.size
        variants = [e for e in self._variants(entry.key) if e is not entry]
        if not variants:
            self._by_key.pop(entry.key, None)
        else:
            self._by_key[entry.key] = variants[0] if len(variants) == 1 else variants
        self.memory.discard(entry.id)
        if delete_files:
            d = self.disk.remove(entry)
            d.addErrback(lambda f: log.warn("proxy: cannot remove cache files of {id}: {error}",
                                            id=entry.id, error=f.getErrorMessage()))

    def invalidate(self, key: bytes) -> int:
        """Remove every variant stored for *key* (RFC 9111 4.4)."""
        variants = self._variants(key)
        for entry in variants:
            self.remove(entry)
        return len(variants)

    def resized(self, entry: Entry, old_size: int) -> None:
        """An entry's headers changed (304 update): account for its new size."""
        if self.contains(entry):
            self.size += entry.size - old_size
            self._evict(keep=entry)

    def reclaim_sparse_segment(self) -> int:
        """Free a segment that is mostly dead: keep its entries whose body is in
        memory (appended anew), drop the others. Returns how many were dropped."""
        segment = self.disk.segments.sparse()
        if segment is None:
            return 0
        dropped = 0
        for entry in [e for e in self._lru.values() if e.segment == segment]:
            body = self.memory.get(entry.id)
            if body is not None and entry.committed:
                old_segment, old_size = entry.segment, entry.record_size
                self.disk.store_small(entry, body)  # committed again with the next batch
                self.disk.segments.released(old_segment, old_size)
            else:
                self.remove(entry)
                dropped += 1
        return dropped

    def _evict(self, keep: Entry | None = None) -> None:
        while self.size > self.max_bytes and self._lru:
            oldest = next(iter(self._lru.values()))
            if oldest is keep:
                if len(self._lru) == 1:
                    break
                self._lru.move_to_end(oldest.id)
                continue
            self.remove(oldest)

    # -- bodies -------------------------------------------------------------

    def cached_body(self, entry: Entry) -> bytes | None:
        """The body if it is in memory (the hit fast path)."""
        return self.memory.get(entry.id)

    @defer.inlineCallbacks
    def load_body(self, entry: Entry):
        """The whole body of a small entry from disk, or None if it was corrupt (then removed)."""
        try:
            body = yield self.disk.read_body(entry)
        except (CorruptEntry, OSError) as e:
            self.corrupt(entry, str(e))
            return None
        entry.verified = True
        self.memory.put(entry.id, body)
        return body

    @defer.inlineCallbacks
    def verify(self, entry: Entry):
        """True if a large entry's body checks out (checked once per run)."""
        if entry.verified:
            return True
        try:
            yield self.disk.verify(entry)
        except (CorruptEntry, OSError) as e:
            self.corrupt(entry, str(e))
            return False
        entry.verified = True
        return True

    def corrupt(self, entry: Entry, why: str) -> None:
        log.warn("proxy: corrupt cache entry removed: {why}", why=why)
        self.corrupt_removed += 1
        self.remove(entry)
