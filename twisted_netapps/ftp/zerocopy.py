"""Kernel-side copies for plain-TCP transfers: ``os.sendfile`` for RETR, ``os.splice`` for STOR.

The seam is public: the data transport's ``getHandle()`` socket. A
duplicate of its descriptor is registered with the reactor
(``IReactorFDSet``), so the kernel moves the bytes each time the socket can
take or give more, without passing them through Python:

- :class:`SendfileSender` (RETR): a writer; the file goes to the socket with
  ``os.sendfile`` as it drains. The transport keeps reading on the original
  descriptor and still reports the peer closing or resetting.
- :class:`SpliceReceiver` (STOR): a reader while the transport is paused (it
  reads nothing meanwhile, so no byte goes two ways); socket -> pipe -> file
  with ``os.splice``, until end of stream.

Under TLS (bytes must be encrypted in user space), in TYPE A, on a reactor
without ``IReactorFDSet``, without a socket handle, where the call is missing, or for an ``O_APPEND`` file (APPE:
the kernel refuses to splice into one), :func:`sendfile_socket` /
:func:`splice_socket` say no and the caller uses a producer or writes each
received chunk. Callers only ask for transports that carry no TLS layer (FTP
starts TLS on data connections itself, so it knows).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Callable

from twisted.internet import interfaces
from zope.interface import implementer

SENDFILE_CHUNK = 4 * 1024 * 1024  # asked of one sendfile call; the socket takes what fits
PIPE_SIZE = 1024 * 1024  # asked of the kernel for the splice pipe; it may give less
MAX_PER_TURN = 32 * 1024 * 1024  # then give the reactor back to other connections
_SPLICE_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
_SPLICE_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)


def _stream_socket(reactor, transport) -> socket.socket | None:
    if not interfaces.IReactorFDSet.providedBy(reactor):  # IOCP, test reactors: no descriptors to watch
        return None
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if isinstance(handle, socket.socket) and handle.type == socket.SOCK_STREAM:
        return handle
    return None


def sendfile_socket(reactor, transport) -> socket.socket | None:
    """The transport's TCP socket if sendfile can write to it directly, else None."""
    return _stream_socket(reactor, transport) if hasattr(os, "sendfile") else None


def splice_socket(reactor, transport, file_fd: int) -> socket.socket | None:
    """The transport's TCP socket if it can be spliced into *file_fd*, else None."""
    if not hasattr(os, "splice") or fcntl.fcntl(file_fd, fcntl.F_GETFL) & os.O_APPEND:
        return None
    return _stream_socket(reactor, transport)


class _SocketCopier:
    """A duplicate of the data socket registered with the reactor; ends once, with
    ``on_done(None)`` or ``on_done(OSError)``; ``on_progress(n)`` as bytes move."""

    def __init__(self, reactor, sock: socket.socket, on_progress: Callable[[int], None],
                 on_done: Callable[[BaseException | None], None]) -> None:
        self.reactor = reactor
        self.on_progress = on_progress
        self.on_done = on_done
        self._fd = os.dup(sock.fileno())  # shares the (non-blocking) open socket
        self._stopped = False

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return f"ftp-{type(self).__name__}"

    def connectionLost(self, reason) -> None:
        # The reactor calls this only if doRead/doWrite raised: a socket failure.
        self._finish(OSError(errno.EPIPE, str(reason)))

    def stop(self) -> None:
        """Unregister and release the descriptors (idempotent); no callback."""
        if self._stopped:
            return
        self._stopped = True
        self._unregister()
        for fd in self._descriptors():
            os.close(fd)

    def _descriptors(self) -> tuple[int, ...]:
        return (self._fd,)

    def _finish(self, error: BaseException | None, moved: int = 0) -> None:
        if moved:
            self.on_progress(moved)
        if self._stopped:
            return
        self.stop()
        self.on_done(error)


@implementer(interfaces.IWriteDescriptor)
class SendfileSender(_SocketCopier):
    """Sends *file* from its current position to *sock*."""

    def __init__(self, reactor, sock, file, on_progress, on_done) -> None:
        super().__init__(reactor, sock, on_progress, on_done)
        self.file_fd = file.fileno()
        self.offset = os.lseek(self.file_fd, 0, os.SEEK_CUR)

    def start(self) -> None:
        self.reactor.addWriter(self)

    def _unregister(self) -> None:
        self.reactor.removeWriter(self)

    def doWrite(self):
        moved = 0
        while moved < MAX_PER_TURN:
            try:
                sent = os.sendfile(self._fd, self.file_fd, self.offset, SENDFILE_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._finish(e, moved)
                return None
            if sent == 0:  # end of file
                self._finish(None, moved)
                return None
            self.offset += sent
            moved += sent
        if moved:
            self.on_progress(moved)
        return None


@implementer(interfaces.IReadDescriptor)
class SpliceReceiver(_SocketCopier):
    """Moves everything *sock* receives into *file_fd*, at the file's current position."""

    def __init__(self, reactor, sock, file_fd: int, on_progress, on_done) -> None:
        super().__init__(reactor, sock, on_progress, on_done)
        self.file_fd = file_fd
        self._pipe_r, self._pipe_w = os.pipe()
        try:
            self._pipe_size = fcntl.fcntl(self._pipe_w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
        except OSError:  # over /proc/sys/fs/pipe-max-size: keep the default
            self._pipe_size = 65536

    def start(self) -> None:
        self.reactor.addReader(self)

    def _unregister(self) -> None:
        self.reactor.removeReader(self)

    def _descriptors(self) -> tuple[int, ...]:
        return (self._fd, self._pipe_r, self._pipe_w)

    def doRead(self):
        moved = 0
        while moved < MAX_PER_TURN:
            try:
                count = os.splice(self._fd, self._pipe_w, self._pipe_size, flags=_SPLICE_MOVE | _SPLICE_NONBLOCK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._finish(e, moved)
                return None
            if count == 0:  # the client's EOF: the upload is complete
                self._finish(None, moved)
                return None
            try:
                while count:  # the pipe into the file; blocks only on the disk, like a write
                    written = os.splice(self._pipe_r, self.file_fd, count, flags=_SPLICE_MOVE)
                    count -= written
                    moved += written
            except OSError as e:
                self._finish(e, moved)
                return None
        if moved:
            self.on_progress(moved)
        return None
