"""Reading a POP3 session's messages without ever waiting for the disk on the reactor thread.

Opening a file looks its name and inode up, which may wait for the disk;
reading it may too. Both have Linux forms that refuse instead of waiting:
``openat2(RESOLVE_CACHED)`` opens only what the kernel's lookup cache holds
(a cached name has its inode in memory), ``preadv2(RWF_NOWAIT)`` reads only
what the page cache holds. :class:`MessageReader` tries those on the reactor
thread first: a message delivered or read recently costs what an inline read
costs. What they refuse is read in the disk pool, and the same pool job
warms the caches for the next ``ahead`` messages (clients download in order:
``RETR 1``, ``RETR 2``...): it opens each (name and inode into the lookup
cache) and asks the kernel to read it ahead (``POSIX_FADV_WILLNEED``), so
the following ``RETR`` s find them cached. A big message, a filesystem
without ``RWF_NOWAIT`` (tmpfs) or a system without these calls take the pool
path every time. The session answers in command order meanwhile; nothing is
held open or in memory between commands.

Why not simply read every message in the pool: measured with
``bench/pop3_retr.py``, a pool thread reading 4 KiB messages (open, read,
close: three system calls, each giving the GIL up and taking it back while
the reactor thread runs) cost more CPU than the rest of the reply and, on
the loaded shared machine, halved the throughput.

A message opened ahead may be removed by another client (IMAP) before it is
asked for; Maildir files never change once delivered, and an open file stays
readable, so what is sent is still that message, as if it had been read a
moment earlier.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
from typing import TYPE_CHECKING, Callable


from twisted_netapps.mail.store.mailbox import MaildirFolder, MessageFile

if TYPE_CHECKING:
    from twisted.internet import defer

#: What reading one message gives: (bytes, where it was found); None when it is over
#: the inline limit (stream it instead); or the OSError (FileNotFoundError: removed).
ReadResult = "tuple[bytes, MessageFile] | None | OSError"

_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
_NOT_NOW = (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL, errno.EINTR)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _cached_opener() -> Callable[[bytes], int] | None:
    """``open_cached(path) -> fd or -1``: openat2(2) with RESOLVE_CACHED, where the system has it."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64", "riscv64", "ppc64le", "s390x"):
        return None
    try:
        syscall = ctypes.CDLL(None).syscall  # (any failure means "not from the cache": errno is not needed)
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    sys_openat2, at_fdcwd, resolve_cached = 437, -100, 0x20  # one number on every 64-bit Linux
    how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC, 0, resolve_cached)
    how_ref, how_size = ctypes.byref(how), ctypes.sizeof(how)

    def open_cached(path: bytes) -> int:
        return syscall(sys_openat2, at_fdcwd, path, how_ref, how_size)

    probe = open_cached(b"/")  # old kernels (ENOSYS), seccomp filters (EPERM): then never
    if probe < 0:
        return None
    os.close(probe)
    return open_cached


open_cached = _cached_opener()


def read_cached(fd: int, size: int | None, limit: int) -> bytes | None:
    """The file's *size* bytes if the page cache holds them all, else None; never waits for the disk."""
    if _NOWAIT is None or size is None or size > limit:
        return None
    buffer = bytearray(size + 1)
    try:
        got = os.preadv(fd, [buffer], 0, _NOWAIT)
    except OSError as e:
        if e.errno in _NOT_NOW:
            return None
        raise
    if got != size:  # partly cached, or not the size its name says: the blocking path knows
        return None
    del buffer[got:]
    return bytes(buffer)


def read_file(folder: MaildirFolder, ref: MessageFile, limit: int) -> object:
    """Blocking (disk pool): the :data:`ReadResult` of *ref*."""
    try:
        return folder.read_small(ref, limit)
    except OSError as e:
        return e


def warm(folder: MaildirFolder, refs: list[MessageFile]) -> None:
    """Blocking (disk pool): bring *refs*' names into the lookup cache and start reading their data."""
    base = str(folder.path)
    for ref in refs:
        try:
            fd = os.open(f"{base}/{ref.subdir}/{ref.filename}", os.O_RDONLY)
        except OSError:
            continue  # gone or renamed: its RETR finds out
        try:
            if _WILLNEED is not None:
                os.posix_fadvise(fd, 0, 0, _WILLNEED)  # the kernel reads it in the background
        finally:
            os.close(fd)


class MessageReader:
    """The messages of one logged-in POP3 session: from the kernel's caches, else from the disk pool."""

    def __init__(self, folder: MaildirFolder, messages: list, run: Callable, *, inline_limit: int,
                 ahead: int = 32) -> None:
        self.folder = folder
        self.messages = messages  # the session's Pop3Message list (deleted flags are live)
        self.run = run
        self.inline_limit = inline_limit
        self.ahead = ahead
        self._warmed_to = 0  # the highest message number whose caches a pool job warmed
        self._base = os.fsencode(folder.path)
        self._paths: dict[int, tuple[MessageFile, bytes]] = {}  # number -> (ref, its path), built once

    def take(self, message) -> object:
        """The :data:`ReadResult` for *message* if both its name and its data are
        in the kernel's caches (nothing waits); ``NotImplemented`` if not (call :meth:`read`)."""
        if open_cached is None:
            return NotImplemented
        ref = message.ref
        known = self._paths.get(message.number)
        if known is not None and known[0] is ref:
            path = known[1]
        else:
            path = b"%s/%s/%s" % (self._base, ref.subdir.encode(), os.fsencode(ref.filename))
            self._paths[message.number] = ref, path
        fd = open_cached(path)
        if fd < 0:
            return NotImplemented  # not cached, or renamed meanwhile: the pool finds it
        try:
            data = read_cached(fd, ref.size, self.inline_limit)
        except OSError:
            data = None
        finally:
            os.close(fd)
        if data is None:
            return NotImplemented
        return data, ref

    def read(self, message) -> defer.Deferred:
        """A Deferred :data:`ReadResult` for *message*, read in the disk pool; unless
        that was done already, a second pool job warms the caches for the messages after it."""
        d = self.run(read_file, self.folder, message.ref, self.inline_limit)
        number = message.number
        if not number < self._warmed_to <= number + self.ahead:
            following = [
                other.ref for other in self.messages[number:number + self.ahead]
                if not other.deleted and other.size <= self.inline_limit
            ]
            self._warmed_to = number + self.ahead
            if following:
                self.run(warm, self.folder, following)
        return d
