"""Pieces on disk: a torrent's byte stream mapped onto its files (blocking; run in a thread pool).

A piece may span several files; :meth:`PieceStore.spans` says which bytes of
which files hold it. Paths come from the metainfo already sanitised and are
checked again here to resolve inside the download directory (no symlink
escapes either). A piece is written only after its SHA-1 matched
(:meth:`write_verified`), and :meth:`sync` fsyncs every file written since the
last sync: the caller announces pieces (``have``) only after that.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from twisted_netapps.bittorrent.metainfo import Metainfo, MetainfoError


class StorageError(Exception):
    """The download directory or a file in it cannot be used."""


class PieceStore:
    def __init__(self, meta: Metainfo, directory: Path) -> None:
        self.meta = meta
        self.directory = Path(directory)
        self.paths = [self._safe_path(f.path) for f in meta.files]
        self._fds: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._ends = [f.offset + f.length for f in meta.files]

    def _safe_path(self, parts: tuple[str, ...]) -> Path:
        root = self.directory.resolve()
        path = root.joinpath(*parts)
        if os.path.commonpath([root, path.resolve()]) != str(root):
            raise MetainfoError(f"{'/'.join(parts)}: escapes the download directory")
        return path

    # -- files ---------------------------------------------------------------------
    def _fd(self, i: int, create: bool) -> int | None:
        fd = self._fds.get(i)
        if fd is not None:
            return fd
        path = self.paths[i]
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            else:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"{path}: {e.strerror}") from None
        self._fds[i] = fd
        return fd

    def prepare(self) -> None:
        """Create every file (empty and sparse, never truncating what is there)."""
        for i, f in enumerate(self.meta.files):
            fd = self._fd(i, create=True)
            if f.length == 0:
                continue
            if os.fstat(fd).st_size > f.length:
                os.ftruncate(fd, f.length)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def spans(self, index: int, begin: int = 0, length: int | None = None) -> list[tuple[int, int, int]]:
        """(file number, offset in file, length) covering piece *index* from *begin*."""
        meta = self.meta
        start = index * meta.piece_length + begin
        if length is None:
            length = meta.piece_size(index) - begin
        end = start + length
        result = []
        for i, f in enumerate(meta.files):
            if self._ends[i] <= start or f.length == 0:
                continue
            if f.offset >= end:
                break
            lo = max(start, f.offset)
            hi = min(end, self._ends[i])
            result.append((i, lo - f.offset, hi - lo))
        return result

    # -- reading and writing ---------------------------------------------------------
    def read(self, index: int, begin: int = 0, length: int | None = None) -> bytes | None:
        """The bytes, or None if a file is missing or short."""
        parts = []
        for i, offset, size in self.spans(index, begin, length):
            fd = self._fd(i, create=False)
            if fd is None:
                return None
            data = os.pread(fd, size, offset)
            if len(data) != size:
                return None
            parts.append(data)
        return b"".join(parts)

    def write_verified(self, index: int, data: bytes) -> bool:
        """Write piece *index* if *data* matches its hash; False (nothing written) otherwise."""
        if hashlib.sha1(data).digest() != self.meta.piece_hash(index):
            return False
        view = memoryview(data)
        pos = 0
        for i, offset, size in self.spans(index):
            fd = self._fd(i, create=True)
            chunk = view[pos:pos + size]
            while chunk:
                written = os.pwrite(fd, chunk, offset)
                chunk = chunk[written:]
                offset += written
            pos += size
            self._dirty.add(i)
        return True

    def sync(self) -> None:
        """fsync every file written since the last sync."""
        dirty, self._dirty = self._dirty, set()
        for i in dirty:
            os.fsync(self._fds[i])

    def check(self, index: int) -> tuple[bool, bytes | None]:
        """Whether piece *index* on disk matches its hash (and its bytes if so)."""
        data = self.read(index)
        ok = data is not None and hashlib.sha1(data).digest() == self.meta.piece_hash(index)
        return ok, data if ok else None

    def recheck(self) -> bytearray:
        """Resume: 1 for every piece already on disk and intact."""
        have = bytearray(self.meta.piece_count)
        if not any(p.exists() for p in self.paths):
            return have
        for index in range(self.meta.piece_count):
            have[index] = self.check(index)[0]
        return have
