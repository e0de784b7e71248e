"""The cache's files under ``<data_dir>/proxy/cache``.

Small entries (no larger than the memory cache's largest object: complete
in memory when their response ends) are records in ``segments/``, many
made durable by one fsync (:mod:`segments`).

Large entries have files of their own: ``objects/<first two hex
digits>/<id>.body`` and ``.meta``, and ``tmp/<id>.body`` while the response
is still arriving. The body streams into ``tmp/`` as it arrives (written on
the reactor thread: page-cache writes, so a large object is never held
whole in memory). When it is complete, a disk-pool thread fsyncs it,
renames it into ``objects/`` and writes the metadata with temp file, fsync,
rename and a directory fsync.

Either way an entry is "committed" only once durable: after ``kill -9`` the
start-up scan finds complete, checked entries and removes everything else
(temp files, bodies without metadata, metadata without body or with a
checksum or length that does not match, torn segment tails).

Every blocking call other than those small page-cache writes runs through
``run_blocking(f, *args) -> Deferred`` (the daemon's disk pool).
"""

from __future__ import annotations

import os
import secrets
import zlib
from pathlib import Path

from twisted_netapps.fileio import ensure_private_dir, write_atomically
from twisted_netapps.proxy.policy.freshness import DEFAULT_HEURISTIC, HeuristicRule
from twisted.internet import defer

from twisted_netapps.proxy.store.entry import CorruptEntry, Entry
from twisted_netapps.proxy.store.segments import DELETE, HEADER, META, PUT, SegmentLog, record, replay

READ_CHUNK = 65536


class BodyWriter:
    """Appends a body to its temp file and keeps its length and CRC-32."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.length = 0
        self.crc = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.length += len(data)
        self.crc = zlib.crc32(data, self.crc)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def abort(self) -> None:
        """Give the body up: close and delete (small calls, fine on any thread)."""
        self.close()
        self.path.unlink(missing_ok=True)


class DiskStore:
    def __init__(self, root: Path, run_blocking, clock, heuristic: HeuristicRule = DEFAULT_HEURISTIC) -> None:
        self.root = ensure_private_dir(root)
        self.segments = SegmentLog(root / "segments", run_blocking, clock)
        self._run_id = secrets.token_hex(8)
        self._ids = 0
        self.objects = ensure_private_dir(root / "objects")
        self.tmp = ensure_private_dir(root / "tmp")
        # Bodies a previous run left half-written. Listed now, before this run
        # writes any, so the (asynchronous) scan removes only those.
        self.leftovers = list(self.tmp.iterdir())
        self.run_blocking = run_blocking
        self.heuristic = heuristic

    def new_id(self) -> str:
        """A unique entry id: random per run, then counted (no system call per entry)."""
        self._ids += 1
        return f"{self._run_id}{self._ids:016x}"

    def _final(self, entry_id: str, suffix: str) -> Path:
        return self.objects / entry_id[:2] / f"{entry_id}{suffix}"

    def temp_body(self, entry_id: str) -> Path:
        return self.tmp / f"{entry_id}.body"

    def open_writer(self, entry_id: str) -> BodyWriter:
        return BodyWriter(self.temp_body(entry_id))

    # -- blocking work, run in the disk pool ------------------------------

    def _commit(self, entry_id: str, fd: int, meta: bytes) -> None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = ensure_private_dir(self.objects / entry_id[:2])
        os.replace(self.temp_body(entry_id), directory / f"{entry_id}.body")
        write_atomically(directory / f"{entry_id}.meta", meta)  # fsyncs the directory too

    def store_small(self, entry: Entry, body: bytes, waiter=None) -> None:
        """Append a small complete entry to the segment log; *waiter* hears when it is durable."""
        meta = entry.to_meta()
        data = record(PUT, entry.id, meta, body)
        segment, offset = self.segments.append(data, waiter)
        entry.segment, entry.offset, entry.record_size = segment, offset + HEADER.size + len(meta), len(data)
        self.segments.occupied(segment, len(data))

    def commit(self, entry: Entry, writer: BodyWriter):
        """Make a complete entry durable; the Deferred fires when it is."""
        fd, writer.fd = writer.fd, None
        return self.run_blocking(self._commit, entry.id, fd, entry.to_meta())

    def write_meta(self, entry: Entry):
        """Record a committed entry's new metadata (after a 304 or HEAD update)."""
        if entry.segment is not None:
            self.segments.append(record(META, entry.id, entry.to_meta()))
            return defer.succeed(None)
        path = self._final(entry.id, ".meta")
        return self.run_blocking(write_atomically, path, entry.to_meta())

    def _remove(self, entry_id: str) -> None:
        for path in (self._final(entry_id, ".meta"), self._final(entry_id, ".body"), self.temp_body(entry_id)):
            path.unlink(missing_ok=True)

    def remove(self, entry: Entry):
        if entry.segment is not None:
            if entry.committed or entry.record_size:
                self.segments.append(record(DELETE, entry.id))
                self.segments.released(entry.segment, entry.record_size)
            return defer.succeed(None)
        return self.run_blocking(self._remove, entry.id)

    def _body_paths(self, entry: Entry) -> tuple[Path, Path]:
        # The rename from tmp/ may happen between our lookup and the open.
        final, temp = self._final(entry.id, ".body"), self.temp_body(entry.id)
        return (final, temp) if entry.committed else (temp, final)

    def _open(self, entry: Entry):
        for path in self._body_paths(entry):
            try:
                return open(path, "rb")
            except FileNotFoundError:
                continue
        raise CorruptEntry(f"{entry.id}: body file missing")

    def _read_body(self, entry: Entry) -> bytes:
        if entry.segment is not None:
            data = self.segments._read(entry.segment, entry.offset, entry.body_length)
        else:
            with self._open(entry) as f:
                data = f.read(entry.body_length + 1)
        if len(data) != entry.body_length or zlib.crc32(data) != entry.body_crc:
            raise CorruptEntry(f"{entry.id}: body does not match its length or checksum")
        return data

    def read_body(self, entry: Entry):
        """The whole body, checked (Deferred; errback CorruptEntry)."""
        return self.run_blocking(self._read_body, entry)

    def _verify(self, entry: Entry) -> None:
        if entry.segment is not None:
            self._read_body(entry)
            return
        crc, length = 0, 0
        with self._open(entry) as f:
            while chunk := f.read(READ_CHUNK):
                crc = zlib.crc32(chunk, crc)
                length += len(chunk)
        if length != entry.body_length or crc != entry.body_crc:
            raise CorruptEntry(f"{entry.id}: body does not match its length or checksum")

    def verify(self, entry: Entry):
        """Check a large body against its checksum without holding it in memory."""
        return self.run_blocking(self._verify, entry)

    def _read_range(self, entry: Entry, offset: int, size: int) -> bytes:
        if entry.segment is not None:
            data = self.segments._read(entry.segment, entry.offset + offset, min(size, entry.body_length - offset))
        else:
            with self._open(entry) as f:
                f.seek(offset)
                data = f.read(size)
        if len(data) != min(size, entry.body_length - offset):
            raise CorruptEntry(f"{entry.id}: body shorter than recorded")
        return data

    def read_range(self, entry: Entry, offset: int, size: int):
        return self.run_blocking(self._read_range, entry, offset, size)

    def _scan(self) -> tuple[list[Entry], int]:
        """Load every committed entry; delete leftovers and corrupt pairs."""
        for leftover in self.leftovers:
            leftover.unlink(missing_ok=True)
        entries: list[tuple[float, Entry]] = []
        removed = 0
        for directory in self.objects.iterdir():
            if not directory.is_dir():
                continue
            names = {p.name for p in directory.iterdir()}
            for name in names:
                entry_id, _dot, suffix = name.partition(".")
                if suffix == "body" and f"{entry_id}.meta" in names:
                    continue
                if suffix != "meta" or f"{entry_id}.body" not in names:
                    (directory / name).unlink(missing_ok=True)
                    removed += 1
                    continue
                meta_path, body_path = directory / name, directory / f"{entry_id}.body"
                try:
                    entry = Entry.from_meta(entry_id, meta_path.read_bytes(), self.heuristic)
                    stat = body_path.stat()
                    if stat.st_size != entry.body_length:
                        raise CorruptEntry(f"{entry_id}: body length differs from its metadata")
                except (CorruptEntry, OSError):
                    self._remove(entry_id)
                    removed += 1
                    continue
                entries.append((stat.st_mtime, entry))
        replayed = replay(self.segments.directory, self.segments.first_new)
        removed += replayed.cut
        for entry_id, (segment, offset, meta, length) in replayed.puts.items():
            try:
                entry = Entry.from_meta(entry_id, meta, self.heuristic)
            except CorruptEntry:
                removed += 1
                continue
            if entry.body_length != length:
                removed += 1
                continue
            entry.segment, entry.offset = segment, offset
            entry.record_size = HEADER.size + len(meta) + length
            entry.verified = True  # the record's CRC covered the body
            entries.append((replayed.mtimes.get(segment, 0.0), entry))
        entries.sort(key=lambda pair: pair[0])  # oldest first: the LRU order we rebuild
        return [entry for _mtime, entry in entries], removed, replayed

    @defer.inlineCallbacks
    def scan(self):
        """Deferred (entries oldest first, number of damaged files or records removed)."""
        entries, removed, replayed = yield self.run_blocking(self._scan)
        live = {e.id for e in entries}
        replayed.puts = {k: v for k, v in replayed.puts.items() if k in live}
        self.segments.adopt(replayed)
        return entries, removed
