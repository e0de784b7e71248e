"""Writing under the document root: PUT (upload) and DELETE. Storage only, blocking.

An upload goes to a hidden temp file in the target's directory
(``.NAME.upload-RANDOM``, never served: hidden names are refused), is
fsync'd, then renamed over the target and the directory fsync'd. A broken
upload (client gone, too large, disk full) removes its temp file: readers
only ever see the old file or the whole new one, and what a 201/204 reported
survives ``kill -9``.

Every operation works relative to a descriptor of the target's parent
directory, opened first and then checked to be inside the root
(``/proc/self/fd``), so a symlinked directory cannot lead a write outside.
The target itself is replaced or unlinked as a name (a symlink there is
replaced, never followed).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from typing import Callable

from twisted_netapps.web.conditional import Validators
from twisted_netapps.web.errors import StatusError
from twisted_netapps.web.files import digest_descriptor, digest_etag
from twisted_netapps.web.paths import PathRefused, inside, join_under, opened_path


class ObjectError(StatusError):
    """A write that cannot be done: *status* (404, 409, 412, 507) and why."""


Check = Callable[[Validators], int | None]  # precondition evaluation: None or a status


def _current(dir_fd: int, name: str, need_etag: bool) -> Validators:
    """Validators of the file *name* in *dir_fd* as it is now (blocking)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return Validators(None, None, exists=False)
    except OSError as e:  # a symlink (ELOOP) or a directory: not an object we manage
        raise ObjectError(409, f"{name} cannot be written: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ObjectError(409, f"{name} is not a regular file")
        return Validators(digest_descriptor(fd) if need_etag else None, int(st.st_mtime))
    finally:
        os.close(fd)


class ObjectStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.root_real = os.path.realpath(self.root)

    def _open_parent(self, names: list[str]) -> int:
        if not names:
            raise ObjectError(409, "the root itself cannot be written")
        parent = join_under(self.root, names[:-1])
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectError(409, "the parent directory does not exist") from None
        if not inside(self.root_real, opened_path(fd)):
            os.close(fd)
            raise PathRefused(404, "directory outside the root")
        return fd

    def begin_upload(self, names: list[str]) -> "Upload":
        dir_fd = self._open_parent(names)
        try:
            temp = f".{names[-1][:100]}.upload-{secrets.token_hex(6)}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        except OSError:
            os.close(dir_fd)
            raise
        return Upload(dir_fd, names[-1], temp, fd, join_under(self.root, names))

    def delete(self, names: list[str], check: Check, need_etag: bool) -> None:
        """Unlink *names* if *check* allows (blocking: run it in the disk pool)."""
        dir_fd = self._open_parent(names)
        try:
            current = _current(dir_fd, names[-1], need_etag)
            if not current.exists:
                raise ObjectError(404, "no such file")
            status = check(current)
            if status is not None:
                raise ObjectError(status, "precondition failed")
            os.unlink(names[-1], dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class Upload:
    """One PUT in progress: bytes go to the temp file as they arrive."""

    def __init__(self, dir_fd: int, name: str, temp: str, fd: int, path: str) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.temp = temp
        self.fd: int | None = fd
        self.path = path
        self.size = 0
        self._hash = hashlib.blake2b(digest_size=16)

    def write(self, data: bytes) -> None:
        """Append *data* (a page-cache write; the fsync comes at commit)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self._hash.update(data)
        self.size += len(data)

    def commit(self, check: Check, need_etag: bool) -> tuple[bool, bytes]:
        """fsync, check the preconditions against the current file, rename,
        fsync the directory: (created, ETag). Blocking: run it in the disk pool."""
        try:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
            current = _current(self.dir_fd, self.name, need_etag)
            status = check(current)
            if status is not None:
                raise ObjectError(status, "precondition failed")
            os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.temp = None
            os.fsync(self.dir_fd)
        except OSError as e:
            raise ObjectError(507, f"cannot store the upload: {e.strerror}") from None
        finally:
            self.discard()
        return not current.exists, digest_etag(self._hash.digest())

    def discard(self) -> None:
        """Forget the upload: close and remove the temp file (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.temp is not None:
            try:
                os.unlink(self.temp, dir_fd=self.dir_fd)
            except OSError:
                pass  # already gone; nothing half-written remains under a served name
            self.temp = None
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None
