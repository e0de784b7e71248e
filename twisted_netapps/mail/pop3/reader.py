"""Reading a POP3 session's messages without blocking the reactor: opens ahead in the
disk pool, reads from the page cache only, everything else in the pool.

Opening a file looks its name and inode up, which may wait for the disk;
reading it may too. So :class:`MessageReader` opens the messages a download
loop will ask for next (``RETR 1``, ``RETR 2``... clients download in order)
in the disk pool, ``batch`` at a time, up to ``ahead`` open files per
session; when the next ``RETR`` comes, its file is read on the reactor
thread with ``preadv2(RWF_NOWAIT)``, which returns at once with the data
when it is in the page cache and refuses (``EAGAIN``) rather than wait for
the disk. Only then, or for a message not opened ahead, a big one, a
filesystem without ``RWF_NOWAIT`` (tmpfs) or a platform without it, is the
read done in the disk pool. Either way nothing on the reactor thread waits
for the disk, and the session answers in command order meanwhile.

Why not simply read in the pool: measured with ``bench/pop3_retr.py``, a
pool thread reading 4 KiB messages (open, read, close: three system calls,
each giving up and retaking the GIL while the reactor thread runs) cost more
CPU than the whole reply and halved the throughput on a loaded machine;
opening ahead is one GIL hand-off per message, in batches.

A message opened ahead may be removed by another client (IMAP) before it is
asked for; Maildir files never change once delivered, and an open file stays
readable, so what is sent is still that message, as if it had been read a
moment earlier.
"""

from __future__ import annotations

import errno
import os
from typing import Callable

from twisted.internet import defer

from twisted_netapps.mail.store.mailbox import MaildirFolder, MessageFile

#: What reading one message gives: (bytes, where it was found); None when it is over
#: the inline limit (stream it instead); or the OSError (FileNotFoundError: removed).
ReadResult = "tuple[bytes, MessageFile] | None | OSError"

_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_NOT_NOW = (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL, errno.EINTR)


def open_batch(folder: MaildirFolder, refs: list[tuple[int, MessageFile]]) -> dict[int, object]:
    """Blocking (disk pool): message number -> (fd, where found) or the OSError."""
    base = str(folder.path)
    opened: dict[int, object] = {}
    for number, ref in refs:
        try:
            try:
                opened[number] = os.open(f"{base}/{ref.subdir}/{ref.filename}", os.O_RDONLY), ref
            except FileNotFoundError:
                moved = folder.relocate(ref)  # renamed by a flag change meanwhile
                if moved is None:
                    raise
                opened[number] = os.open(f"{base}/{moved.subdir}/{moved.filename}", os.O_RDONLY), moved
        except OSError as e:
            opened[number] = e
    return opened


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


def read_fd(fd: int, ref: MessageFile, limit: int) -> object:
    """Blocking (disk pool): the :data:`ReadResult` of an open file; closes it."""
    try:
        chunks, total = [], 0
        while total <= limit:
            chunk = os.pread(fd, limit + 1 - total, total)
            if not chunk:
                return b"".join(chunks), ref
            chunks.append(chunk)
            total += len(chunk)
        return None
    except OSError as e:
        return e
    finally:
        os.close(fd)


def read_file(folder: MaildirFolder, ref: MessageFile, limit: int) -> object:
    """Blocking (disk pool): the :data:`ReadResult` of a message not opened ahead."""
    try:
        return folder.read_small(ref, limit)
    except OSError as e:
        return e


class MessageReader:
    """The messages of one logged-in POP3 session: opened ahead in the pool, read without waiting."""

    def __init__(
        self,
        folder: MaildirFolder,
        messages: list,
        run: Callable,
        *,
        inline_limit: int,
        batch: int = 16,
        ahead: int = 32,
    ) -> None:
        self.folder = folder
        self.messages = messages  # the session's Pop3Message list (deleted flags are live)
        self.run = run
        self.inline_limit = inline_limit
        self.batch = batch
        self.ahead = ahead
        self._open: dict[int, object] = {}  # number -> (fd, ref) or OSError, opened ahead
        self._opening: set[int] = set()  # numbers in a batch under way
        self._horizon = 0  # the highest message number opened or being opened
        self._last_taken = 0
        self._closed = False

    def take(self, message) -> object:
        """The :data:`ReadResult` for *message* if it can be had now without waiting
        for the disk; ``NotImplemented`` if not (then call :meth:`read`)."""
        number = message.number
        entry = self._open.get(number)
        if entry is None:
            return NotImplemented
        if number != self._last_taken + 1:
            self._close_before(number)  # not in order: what was opened before it is wasted
        self._last_taken = number
        if not self._opening:
            self._open_ahead()
        if type(entry) is not tuple:
            del self._open[number]
            return entry  # the OSError of the open
        fd, ref = entry
        data = read_cached(fd, ref.size, self.inline_limit)
        if data is None:
            return NotImplemented  # read() reads this open file in the pool
        del self._open[number]
        os.close(fd)
        return data, ref

    def read(self, message) -> defer.Deferred:
        """A Deferred :data:`ReadResult` for *message*, read in the disk pool."""
        number = message.number
        entry = self._open.pop(number, None)
        if type(entry) is tuple:
            fd, ref = entry
            return self.run(read_fd, fd, ref, self.inline_limit)
        if entry is not None:
            return defer.succeed(entry)
        # Not opened ahead: the client went elsewhere. Read it, and open ahead from there.
        self._close_before(number)
        self._last_taken = number
        self._horizon = max(number, self._horizon if number in self._opening else 0)
        d = self.run(read_file, self.folder, message.ref, self.inline_limit)
        if not self._opening:
            self._open_ahead()
        return d

    def close(self) -> None:
        """The session is over: close every file opened ahead, open no more."""
        self._closed = True
        for entry in self._open.values():
            if type(entry) is tuple:
                os.close(entry[0])
        self._open.clear()

    # ------------------------------------------------------------ internals

    def _open_ahead(self) -> None:
        # Whole batches only: a pool round trip costs more than the open it carries.
        room = self.ahead - len(self._open)
        if self._closed or room < self.batch:
            return
        room = self.batch
        refs: list = []
        for message in self.messages[self._horizon:]:
            if len(refs) >= room:
                break
            if message.deleted or message.size > self.inline_limit or message.number in self._open:
                continue  # (a big message is streamed from its own open when asked for)
            refs.append((message.number, message.ref))
        if not refs:
            return
        self._horizon = refs[-1][0]
        self._opening.update(number for number, _ref in refs)
        self.run(open_batch, self.folder, refs).addCallback(self._opened)

    def _opened(self, opened: dict) -> None:
        self._opening.difference_update(opened)
        for number, entry in opened.items():
            if self._closed or number <= self._last_taken:
                # The session is over, or the client has had (or passed) this one meanwhile.
                if type(entry) is tuple:
                    os.close(entry[0])
                continue
            self._open[number] = entry
        self._open_ahead()

    def _close_before(self, number: int) -> None:
        for stale in [n for n in self._open if n < number]:
            entry = self._open.pop(stale)
            if type(entry) is tuple:
                os.close(entry[0])
