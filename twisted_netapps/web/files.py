"""The file layer under the document root: snapshots of files with validators,
a bounded in-memory cache of small ones, and the content types. No Twisted.

ETags are strong and derived from the content (BLAKE2b of the bytes), so two
versions with the same ETag are byte-for-byte identical, as RFC 9110 8.8.3
asks of a strong validator. A digest is kept per file *version*, keyed by
``(device, inode, size, mtime_ns, ctime_ns)``; but a file rewritten in place
within one clock tick keeps that key, so a version whose ctime is less than
:data:`SETTLE_SECONDS` old is not trusted: a small one is re-read (and
re-hashed) on every request until it settles, a large one gets a *weak* ETag
made from its stat data until then. Large files are never read whole: the
caller gets an open descriptor to stream from.

Files are opened first and checked after (``/proc/self/fd``), so a symlink
out of the root is refused without a race; only regular files are served
(a FIFO or a device would block the reactor).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass, field

from twisted_netapps.web.paths import PathRefused, inside, join_under, opened_path

SETTLE_SECONDS = 2.0
MAX_CACHED_FILES = 50000  # entries, whatever their size (empty files cost memory too)
DIGEST_CHUNK = 1 << 20

_TEXT = "; charset=utf-8"
CONTENT_TYPES = {
    "html": "text/html" + _TEXT, "htm": "text/html" + _TEXT, "css": "text/css" + _TEXT,
    "js": "text/javascript" + _TEXT, "mjs": "text/javascript" + _TEXT, "txt": "text/plain" + _TEXT,
    "md": "text/markdown" + _TEXT, "csv": "text/csv" + _TEXT, "json": "application/json",
    "xml": "application/xml", "svg": "image/svg+xml", "png": "image/png", "gif": "image/gif",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "ico": "image/vnd.microsoft.icon",
    "pdf": "application/pdf", "wasm": "application/wasm", "mp4": "video/mp4", "webm": "video/webm",
    "mp3": "audio/mpeg", "ogg": "audio/ogg", "woff": "font/woff", "woff2": "font/woff2",
    "zip": "application/zip", "gz": "application/gzip", "tar": "application/x-tar",
}
DEFAULT_TYPE = "application/octet-stream"


def content_type_for(name: str) -> bytes:
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    known = CONTENT_TYPES.get(extension)
    if known is None:
        known = mimetypes.guess_type(name, strict=False)[0] or DEFAULT_TYPE
    return known.encode("ascii")


def digest_etag(digest: bytes) -> bytes:
    return b'"' + base64.urlsafe_b64encode(digest).rstrip(b"=") + b'"'


def etag_of(data: bytes) -> bytes:
    return digest_etag(hashlib.blake2b(data, digest_size=16).digest())


def digest_descriptor(fd: int) -> bytes:
    """Strong ETag of an open file's content (blocking: run it in a pool)."""
    h = hashlib.blake2b(digest_size=16)
    offset = 0
    while True:
        chunk = os.pread(fd, DIGEST_CHUNK, offset)
        if not chunk:
            return digest_etag(h.digest())
        h.update(chunk)
        offset += len(chunk)


def _stat_key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def weak_stat_etag(st: os.stat_result) -> bytes:
    return b'W/"%x-%x-%x"' % (st.st_size, st.st_mtime_ns, st.st_ino)


def read_all(fd: int, size: int) -> bytes:
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break  # the file shrank under us; what we read is what we serve
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


@dataclass(slots=True, eq=False)
class FileVersion:
    """One version of a regular file, as served."""

    path: str
    key: tuple
    size: int
    mtime: int
    content_type: bytes
    etag: bytes | None  # None: a large file whose digest is not known yet
    data: bytes | None = None  # the content, for small files
    fd: int | None = None  # an open descriptor for large files; the taker closes it
    trusted: bool = True  # settled: may be reused from the cache
    rendered: dict = field(default_factory=dict)  # Cache-Control directive -> the 200's rendered fields

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    path: str


class FileStore:
    """Snapshots of the files under *root*, small ones cached (LRU, bounded bytes)."""

    def __init__(self, root: str, *, cache_bytes: int, max_cached_file: int, clock) -> None:
        self.root = os.path.abspath(root)
        self.root_real = os.path.realpath(self.root)
        self.cache_bytes = cache_bytes
        self.max_cached_file = max_cached_file
        self.clock = clock
        self._cache: OrderedDict[str, FileVersion] = OrderedDict()
        self._cached_bytes = 0
        self._digests: OrderedDict[tuple, bytes] = OrderedDict()  # large files' stat key -> etag
        self.hits = 0
        self.misses = 0

    def fs_path(self, names: list[str]) -> str:
        return join_under(self.root, names)

    def lookup(self, names: list[str]) -> FileVersion | DirectoryEntry | None:
        """The file or directory *names* denote, or None when there is none to serve.

        Raises PathRefused(404) for a path leading out of the root.
        """
        path = join_under(self.root, names)
        try:
            st = os.stat(path)
        except OSError:  # missing, not a directory on the way, no permission, name too long
            return None
        if stat.S_ISDIR(st.st_mode):
            if not inside(self.root_real, os.path.realpath(path)):
                raise PathRefused(404, "directory outside the root")
            return DirectoryEntry(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        cached = self._cache.get(path)
        if cached is not None and cached.key == _stat_key(st):
            self._cache.move_to_end(path)
            self.hits += 1
            return cached
        self.misses += 1
        return self._load(path, names)

    def _load(self, path: str, names: list[str]) -> FileVersion | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        keep_fd = False
        try:
            if not inside(self.root_real, opened_path(fd)):
                raise PathRefused(404, "file outside the root")
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            key = _stat_key(st)
            trusted = self.clock() - st.st_ctime_ns / 1e9 >= SETTLE_SECONDS
            name = names[-1] if names else ""
            version = FileVersion(path, key, st.st_size, int(st.st_mtime), content_type_for(name), None, trusted=trusted)
            if st.st_size <= self.max_cached_file:
                version.data = read_all(fd, st.st_size)
                version.size = len(version.data)
                version.etag = etag_of(version.data)
                if trusted:
                    self._remember(path, version)
                return version
            keep_fd = True
            version.fd = fd
            if not trusted:
                version.etag = weak_stat_etag(st)
            else:
                version.etag = self._digests.get(key)
            return version
        finally:
            if not keep_fd:
                os.close(fd)

    def remember_digest(self, version: FileVersion, etag: bytes) -> None:
        """Record a large file version's digest (computed by :func:`digest_descriptor`)."""
        version.etag = etag
        if version.trusted:
            self._digests[version.key] = etag
            while len(self._digests) > 4096:
                self._digests.popitem(last=False)

    def _remember(self, path: str, version: FileVersion) -> None:
        old = self._cache.pop(path, None)
        if old is not None:
            self._cached_bytes -= old.size
        if version.size > self.cache_bytes:
            return
        self._cache[path] = version
        self._cached_bytes += version.size
        while self._cached_bytes > self.cache_bytes or len(self._cache) > MAX_CACHED_FILES:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.size

    def forget(self, path: str) -> None:
        """Drop *path* from the cache (after a PUT or DELETE through us)."""
        old = self._cache.pop(path, None)
        if old is not None:
            self._cached_bytes -= old.size
