"""RETR over plain TCP with ``os.sendfile``: file pages go to the socket without passing through Python.

The one seam used is public: the transport's ``getHandle()`` socket. A
duplicate of its file descriptor is registered with the reactor as a writer
(``IReactorFDSet.addWriter``), so each time the socket can take more, the
kernel copies the next part of the file; the transport itself stays
registered for reading on the original descriptor and still reports the
peer closing or resetting the connection. Under TLS (bytes must be
encrypted in user space) or without a socket handle, :func:`sendfile_socket`
returns None and the caller uses an ordinary producer.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Callable

from twisted.internet import interfaces
from zope.interface import implementer

CHUNK = 4 * 1024 * 1024  # asked of one sendfile call; the socket takes what fits
MAX_PER_TURN = 32 * 1024 * 1024  # then give the reactor back to other connections


def sendfile_socket(transport) -> socket.socket | None:
    """The transport's TCP socket if sendfile can write to it directly, else None.

    Only call this for a transport that carries no TLS layer (the caller
    knows: FTP starts TLS on data connections itself).
    """
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None or not hasattr(os, "sendfile"):
        return None
    handle = get_handle()
    if isinstance(handle, socket.socket) and handle.type == socket.SOCK_STREAM:
        return handle
    return None


@implementer(interfaces.IWriteDescriptor)
class SendfileSender:
    """Sends *file* (from its current position) to *sock*; then ``on_done(None)``,
    or ``on_done(OSError)`` if the socket failed. ``on_progress(n)`` after each write."""

    def __init__(self, reactor, sock: socket.socket, file, on_progress: Callable[[int], None],
                 on_done: Callable[[BaseException | None], None]) -> None:
        self.reactor = reactor
        self.file_fd = file.fileno()
        self.offset = os.lseek(self.file_fd, 0, os.SEEK_CUR)
        self.on_progress = on_progress
        self.on_done = on_done
        self._fd = os.dup(sock.fileno())  # shares the (non-blocking) open socket
        self._stopped = False

    def start(self) -> None:
        self.reactor.addWriter(self)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "ftp-sendfile"

    def doWrite(self):
        sent_this_turn = 0
        while sent_this_turn < MAX_PER_TURN:
            try:
                sent = os.sendfile(self._fd, self.file_fd, self.offset, CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._finish(e)
                return None
            if sent == 0:  # end of file
                if sent_this_turn:
                    self.on_progress(sent_this_turn)
                self._finish(None)
                return None
            self.offset += sent
            sent_this_turn += sent
        if sent_this_turn:
            self.on_progress(sent_this_turn)
        return None

    def connectionLost(self, reason) -> None:
        # The reactor calls this only if doWrite raised; treat it as a socket failure.
        self._finish(OSError(errno.EPIPE, str(reason)))

    def stop(self) -> None:
        """Unregister and release the descriptor (idempotent); no callback."""
        if self._stopped:
            return
        self._stopped = True
        self.reactor.removeWriter(self)
        os.close(self._fd)

    def _finish(self, error: BaseException | None) -> None:
        if self._stopped:
            return
        self.stop()
        self.on_done(error)
