"""STOR over plain TCP with ``os.splice``: socket -> pipe -> file in the kernel, no copy through Python.

Like :mod:`twisted_netapps.ftp.sendfile`, the seam is public: the data
transport's ``getHandle()`` socket, duplicated and registered with the
reactor as a reader (``IReactorFDSet.addReader``) while the transport itself
is paused (it reads nothing meanwhile, so no byte goes two ways). Each time
the socket is readable, up to a pipe's worth is spliced into a pipe and from
the pipe into the upload's file; end of stream (0) or an error ends it.
Linux only; where ``os.splice`` is missing, under TLS, in TYPE A or for an
``O_APPEND`` file (APPE: the kernel refuses to splice into one),
:func:`splice_socket` says no and the caller writes each received chunk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Callable

from twisted.internet import interfaces
from zope.interface import implementer

PIPE_SIZE = 1024 * 1024  # asked of the kernel for the pipe; it may give less
MAX_PER_TURN = 32 * 1024 * 1024  # then give the reactor back to other connections
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1)
_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)


def splice_socket(transport, file_fd: int) -> socket.socket | None:
    """The transport's TCP socket if it can be spliced into *file_fd*, else None (no TLS: the caller knows)."""
    if not hasattr(os, "splice") or fcntl.fcntl(file_fd, fcntl.F_GETFL) & os.O_APPEND:
        return None
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if isinstance(handle, socket.socket) and handle.type == socket.SOCK_STREAM:
        return handle
    return None


@implementer(interfaces.IReadDescriptor)
class SpliceReceiver:
    """Moves everything *sock* receives into *file_fd* (at its current position); then
    ``on_done(None)`` at end of stream or ``on_done(OSError)``; ``on_progress(n)`` as it goes."""

    def __init__(self, reactor, sock: socket.socket, file_fd: int, on_progress: Callable[[int], None],
                 on_done: Callable[[BaseException | None], None]) -> None:
        self.reactor = reactor
        self.file_fd = file_fd
        self.on_progress = on_progress
        self.on_done = on_done
        self._fd = os.dup(sock.fileno())  # shares the (non-blocking) open socket
        self._pipe_r, self._pipe_w = os.pipe()
        try:
            self._pipe_size = fcntl.fcntl(self._pipe_w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
        except OSError:  # over /proc/sys/fs/pipe-max-size: keep the default
            self._pipe_size = 65536
        self._stopped = False

    def start(self) -> None:
        self.reactor.addReader(self)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "ftp-splice"

    def doRead(self):
        moved = 0
        while moved < MAX_PER_TURN:
            try:
                count = os.splice(self._fd, self._pipe_w, self._pipe_size, flags=_FLAGS | _NONBLOCK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._finish(e)
                return None
            if count == 0:  # the client's EOF: the upload is complete
                self._report(moved)
                self._finish(None)
                return None
            try:
                while count:  # the pipe into the file; blocks only on the disk, like a write
                    written = os.splice(self._pipe_r, self.file_fd, count, flags=_FLAGS)
                    count -= written
                    moved += written
            except OSError as e:
                self._finish(e)
                return None
        self._report(moved)
        return None

    def _report(self, moved: int) -> None:
        if moved:
            self.on_progress(moved)

    def connectionLost(self, reason) -> None:
        # The reactor calls this only if doRead raised; treat it as a socket failure.
        self._finish(OSError(errno.EPIPE, str(reason)))

    def stop(self) -> None:
        """Unregister and release the descriptors (idempotent); no callback."""
        if self._stopped:
            return
        self._stopped = True
        self.reactor.removeReader(self)
        for fd in (self._fd, self._pipe_r, self._pipe_w):
            os.close(fd)

    def _finish(self, error: BaseException | None) -> None:
        if self._stopped:
            return
        self.stop()
        self.on_done(error)
