"""The kernel-copy paths: the sendfile sender (RETR) and the splice receiver (STOR), and their fallback decisions."""

from __future__ import annotations

import os
import socket

from twisted.internet.interfaces import IReactorFDSet
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_netapps.ftp.zerocopy import SendfileSender, SpliceReceiver, sendfile_socket, splice_socket


@implementer(IReactorFDSet)
class FDSetReactor:
    """What the seam checks of a reactor: that it can watch descriptors (every posix reactor can)."""


POSIX = FDSetReactor()


class FakeReactor:
    def __init__(self) -> None:
        self.writers = set()

    def addWriter(self, writer) -> None:
        self.writers.add(writer)

    def removeWriter(self, writer) -> None:
        self.writers.discard(writer)


class HandleTransport:
    def __init__(self, sock) -> None:
        self.sock = sock

    def getHandle(self):
        return self.sock


def test_fallback_without_a_socket_handle():
    assert sendfile_socket(POSIX, StringTransport()) is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert sendfile_socket(POSIX, HandleTransport(udp)) is None


def test_fallback_on_a_reactor_that_cannot_watch_descriptors(tmp_path):
    a, b = socket.socketpair()
    fd = os.open(tmp_path / "up.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert sendfile_socket(POSIX, HandleTransport(a)) is a
        assert sendfile_socket(object(), HandleTransport(a)) is None  # IOCP, a test reactor
        assert splice_socket(object(), HandleTransport(a), fd) is None
    finally:
        os.close(fd)
        a.close()
        b.close()


def test_sends_the_file_from_its_position_as_the_socket_drains(tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(payload)
    a, b = socket.socketpair()
    a.setblocking(False)
    assert sendfile_socket(POSIX, HandleTransport(a)) is a
    reactor, progress, done = FakeReactor(), [], []
    with open(path, "rb", buffering=0) as f:
        f.seek(100)
        sender = SendfileSender(reactor, a, f, progress.append, done.append)
        sender.start()
        assert reactor.writers == {sender} and sender.fileno() != a.fileno()
        received = bytearray()
        while not done:
            sender.doWrite()  # the reactor would call this whenever the socket is writable
            try:
                while True:
                    chunk = b.recv(1 << 20, socket.MSG_DONTWAIT)
                    if not chunk:
                        break
                    received += chunk
            except BlockingIOError:
                pass
    assert done == [None] and reactor.writers == set()
    a.close()
    b.settimeout(10)
    received += b"".join(iter(lambda: b.recv(1 << 20), b""))
    assert bytes(received) == payload[100:]
    assert sum(progress) == len(payload) - 100
    b.close()


def test_a_reset_peer_reports_the_error_and_releases_the_descriptor(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (8 * 1024 * 1024))
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    reactor, done = FakeReactor(), []
    with open(path, "rb", buffering=0) as f:
        sender = SendfileSender(reactor, a, f, lambda n: None, done.append)
        sender.start()
        sender.doWrite()
    assert len(done) == 1 and isinstance(done[0], OSError)
    assert reactor.writers == set()
    sender.stop()  # idempotent
    a.close()


class ReaderReactor:
    def __init__(self) -> None:
        self.readers = set()

    def addReader(self, reader) -> None:
        self.readers.add(reader)

    def removeReader(self, reader) -> None:
        self.readers.discard(reader)


def test_splice_receiver_moves_everything_to_the_file_until_eof(tmp_path):
    payload = os.urandom(5 * 1024 * 1024 + 3)
    a, b = socket.socketpair()
    a.setblocking(False)
    fd = os.open(tmp_path / "up.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"keep")  # written from the file's position on
    assert splice_socket(POSIX, HandleTransport(a), fd) is a
    reactor, progress, done = ReaderReactor(), [], []
    receiver = SpliceReceiver(reactor, a, fd, progress.append, done.append)
    receiver.start()
    assert reactor.readers == {receiver}
    view = memoryview(payload)
    b.setblocking(False)
    while view:
        try:
            view = view[b.send(view[:1 << 20]):]
        except BlockingIOError:
            pass
        receiver.doRead()  # the reactor would call this whenever the socket is readable
    b.close()
    while not done:
        receiver.doRead()
    os.close(fd)
    assert done == [None] and reactor.readers == set() and sum(progress) == len(payload)
    assert (tmp_path / "up.bin").read_bytes() == b"keep" + payload
    a.close()


def test_splice_refuses_append_only_files_and_reports_resets(tmp_path):
    a, b = socket.socketpair()
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    assert splice_socket(POSIX, HandleTransport(a), fd) is None  # APPE: the caller writes chunks instead
    os.close(fd)
    fd = os.open(tmp_path / "y", os.O_WRONLY | os.O_CREAT, 0o644)
    a.setblocking(False)
    b.send(b"partial")
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b.close()  # reset
    reactor, done = ReaderReactor(), []
    receiver = SpliceReceiver(reactor, a, fd, lambda n: None, done.append)
    receiver.start()
    for _ in range(3):
        receiver.doRead()
    os.close(fd)
    a.close()
    assert len(done) == 1 and (done[0] is None or isinstance(done[0], OSError))
    assert reactor.readers == set()
