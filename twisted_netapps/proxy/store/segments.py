"""Small entries in append-only segment files, made durable in batches (group commit).

One fsync per stored object costs more than serving it (hundreds of µs of
CPU and milliseconds of disk time on ext4), so small entries (those the
memory cache may hold; their body is complete in memory when the response
ends) are appended as records to the current segment, ``segments/<n>.seg``,
and a disk-pool thread writes and fsyncs whatever accumulated -- one fsync
for a whole batch. An entry counts as committed once its batch is synced.

Records (all integers big-endian)::

    b"NAPR" | kind (P put, M metadata, D delete) | id (16 bytes) | meta length (4) | body length (8) |
    CRC-32 of everything after the CRC field (4) | metadata | body

At start the segments are replayed in order: a put adds an entry (its body
checked by the CRC), a metadata record replaces its headers (after a 304), a
delete removes it. A record whose CRC fails is dropped (and its entry with
it); one that is not even framed right ends that segment's replay (a torn
tail after a crash) and is cut off.

Space: each segment knows how many of its bytes are still live. A segment
with nothing live is deleted; an old one less than a quarter live is
reclaimed by re-appending its live entries whose body is in memory and
dropping the rest (they are fetched again when asked for).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from twisted.logger import Logger

from twisted_netapps.fileio import ensure_private_dir, fsync_directory

log = Logger(namespace="netapps.proxy")

MAGIC = b"NAPR"
HEADER = struct.Struct(">4sc16sIQI")
PUT, META, DELETE = b"P", b"M", b"D"
MAX_SEGMENT = 64 * 1024 * 1024
FLUSH_DELAY = 0.02  # seconds records may wait for company before their batch is written (each batch costs a thread hand-off)
MAX_BATCH = 8 * 1024 * 1024


def record(kind: bytes, entry_id: str, meta: bytes = b"", body: bytes = b"") -> bytes:
    raw_id = bytes.fromhex(entry_id)
    crc = zlib.crc32(body, zlib.crc32(meta, zlib.crc32(kind + raw_id + struct.pack(">IQ", len(meta), len(body)))))
    return HEADER.pack(MAGIC, kind, raw_id, len(meta), len(body), crc) + meta + body


@dataclass
class Replayed:
    """What replaying the segments found: entry id -> (segment, body offset, meta, body length)."""

    puts: dict = field(default_factory=dict)
    segments: dict = field(default_factory=dict)  # number -> file size
    mtimes: dict = field(default_factory=dict)  # number -> modification time
    cut: int = 0  # torn or corrupt records dropped


def _segment_number(path: Path) -> int | None:
    if path.suffix != ".seg" or not path.stem.isdigit():
        return None
    return int(path.stem)


def _replay_segment(path: Path, number: int, result: Replayed) -> None:
    size = path.stat().st_size
    position = 0
    with open(path, "rb") as f:
        while position + HEADER.size <= size:
            header = f.read(HEADER.size)
            magic, kind, raw_id, meta_len, body_len, crc = HEADER.unpack(header)
            end = position + HEADER.size + meta_len + body_len
            if magic != MAGIC or kind not in (PUT, META, DELETE) or end > size or body_len > MAX_SEGMENT:
                break  # a torn tail: nothing after it can be trusted to be framed right
            meta = f.read(meta_len)
            body = f.read(body_len)
            check = zlib.crc32(body, zlib.crc32(meta, zlib.crc32(kind + raw_id + struct.pack(">IQ", meta_len,
                                                                                              body_len))))
            if check != crc:
                # Damaged content in a well-framed record: drop that record only.
                result.cut += 1
                result.puts.pop(raw_id.hex(), None)
                position = end
                continue
            entry_id = raw_id.hex()
            if kind == PUT:
                result.puts[entry_id] = (number, position + HEADER.size + meta_len, meta, body_len)
            elif kind == META and entry_id in result.puts:
                segment, offset, _old, length = result.puts[entry_id]
                result.puts[entry_id] = (segment, offset, meta, length)
            elif kind == DELETE:
                result.puts.pop(entry_id, None)
            position = end
    if position < size:
        result.cut += 1
        with open(path, "r+b") as f:
            f.truncate(position)
            os.fsync(f.fileno())
    result.segments[number] = position


def replay(directory: Path, below: int) -> Replayed:
    """Read the segments numbered below *below* in order, record by record (in the disk
    pool); cut torn tails. Segments from *below* on are this run's own."""
    result = Replayed()
    for path in sorted((p for p in directory.iterdir() if _segment_number(p) is not None), key=_segment_number):
        number = _segment_number(path)
        if number < below:
            _replay_segment(path, number, result)
            result.mtimes[number] = path.stat().st_mtime
    return result


class SegmentLog:
    """Appends records on the reactor thread; a disk-pool thread writes and syncs them in batches."""

    def __init__(self, directory: Path, run_blocking, clock, max_segment: int = MAX_SEGMENT) -> None:
        self.directory = ensure_private_dir(directory)
        self.run_blocking = run_blocking
        self.clock = clock
        self.max_segment = max_segment
        # This run appends to segments of its own, numbered after every
        # existing one (listed now, before anything is appended), so replaying
        # the old ones can go on while new records arrive.
        existing = [n for n in map(_segment_number, self.directory.iterdir()) if n is not None]
        self.first_new = max(existing, default=-1) + 1
        self.current = self.first_new
        self.size = 0  # of the current segment, including records not yet written
        self.live: dict[int, int] = {self.current: 0}  # segment -> live bytes
        self.sizes: dict[int, int] = {self.current: 0}  # segment -> bytes
        self._queue: list[tuple[int, bytes, object]] = []  # (segment, record, waiter or None)
        self._queued_bytes = 0
        self._flushing = False
        self._timer = None
        self._fds: dict[int, int] = {}
        self.on_batch = None  # called after each batch is durable
        self._replayed = False
        self.removed_segments: list[int] = []

    def adopt(self, replayed: Replayed) -> None:
        """Account for the replayed segments' live bytes; delete the ones with none."""
        self._replayed = True
        for number, size in replayed.segments.items():
            self.sizes[number] = size
            self.live[number] = 0
        for segment, _offset, meta, length in replayed.puts.values():
            self.live[segment] += HEADER.size + len(meta) + length
        for number in list(replayed.segments):
            if self.live[number] == 0:
                self.released(number, 0)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def append(self, data: bytes, waiter=None) -> tuple[int, int]:
        """Queue a record; return (segment, offset of the record).

        *waiter*, if given, is told ``durable()`` once the record is synced,
        or ``failed(failure)`` (plain calls: a Deferred per record costs more
        than the rest of storing it).
        """
        if self.size and self.size + len(data) > self.max_segment:
            self.current += 1
            self.size = 0
            self.sizes[self.current] = 0
            self.live[self.current] = 0
        segment, offset = self.current, self.size
        self.size += len(data)
        self.sizes[segment] = self.size
        self._queue.append((segment, data, waiter))
        self._queued_bytes += len(data)
        if self._queued_bytes >= MAX_BATCH:
            self._flush()
        elif self._timer is None and not self._flushing:
            self._timer = self.clock.callLater(FLUSH_DELAY, self._flush)
        return segment, offset

    def _flush(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._flushing or not self._queue:
            return
        batch, self._queue = self._queue, []
        self._queued_bytes = 0
        self._flushing = True
        d = self.run_blocking(self._write, [(segment, data) for segment, data, _d in batch])

        def written(result):
            self._flushing = False
            for _segment, _data, waiter in batch:
                if waiter is not None:
                    waiter.durable()
            if self.on_batch is not None:
                self.on_batch()
            if self._queue:
                self._flush()

        def failed(failure):
            self._flushing = False
            log.warn("proxy: cannot write cache segment: {error}", error=failure.getErrorMessage())
            for _segment, _data, waiter in batch:
                if waiter is not None:
                    waiter.failed(failure)
            if self._queue:
                self._flush()

        d.addCallbacks(written, failed)

    def _fd(self, segment: int) -> int:
        fd = self._fds.get(segment)
        if fd is None:
            path = self.directory / f"{segment:010d}.seg"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fds[segment] = fd
            fsync_directory(self.directory)
        return fd

    def _write(self, batch: list[tuple[int, bytes]]) -> None:
        """In the disk pool: append the batch, then one fsync per segment touched."""
        touched: dict[int, list[bytes]] = {}
        for segment, data in batch:
            touched.setdefault(segment, []).append(data)
        for segment, records in touched.items():
            fd = self._fd(segment)
            view = memoryview(b"".join(records))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        for segment in [s for s in self._fds if s < min(touched)]:
            os.close(self._fds.pop(segment))  # older segments are never appended to again

    def read(self, segment: int, offset: int, length: int):
        """Deferred bytes from a segment (the caller checks them)."""
        return self.run_blocking(self._read, segment, offset, length)

    def _read(self, segment: int, offset: int, length: int) -> bytes:
        fd = os.open(self.directory / f"{segment:010d}.seg", os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def released(self, segment: int, nbytes: int) -> None:
        """*nbytes* of *segment* are dead (an entry went); delete the segment when nothing is left."""
        if segment not in self.live:
            return
        self.live[segment] = max(0, self.live[segment] - nbytes)
        if self.live[segment] == 0 and segment < self.first_new and not self._replayed:
            return  # the start-up replay may still be reading it
        if self.live[segment] == 0 and segment != self.current:
            self.live.pop(segment)
            self.sizes.pop(segment, None)
            self.removed_segments.append(segment)
            self.run_blocking(self._delete_segment, segment)

    def _delete_segment(self, segment: int) -> None:
        # An fd the writer may still hold is closed by its next batch: deleting
        # an open file is fine, and the writer's fds are its own.
        (self.directory / f"{segment:010d}.seg").unlink(missing_ok=True)

    def occupied(self, segment: int, nbytes: int) -> None:
        self.live[segment] = self.live.get(segment, 0) + nbytes

    def sparse(self) -> int | None:
        """A segment (not the current one) less than a quarter live, if any: worth reclaiming."""
        for segment, live in self.live.items():
            if segment != self.current and live * 4 < self.sizes.get(segment, 0):
                return segment
        return None

    @property
    def disk_bytes(self) -> int:
        return sum(self.sizes.values())

    def drain(self):
        """Write out what is queued (at shutdown); a Deferred firing when nothing is pending."""
        from twisted.internet import defer

        self._flush()
        if not self._flushing:
            return defer.succeed(None)
        done = defer.Deferred()
        previous = self.on_batch

        def after_batch():
            if previous is not None:
                previous()
            if not self._flushing and not self._queue:
                self.on_batch = previous
                if not done.called:
                    done.callback(None)

        self.on_batch = after_batch
        return done

    def close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
