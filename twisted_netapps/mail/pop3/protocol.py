"""Twisted adapter for the POP3 core: sockets, logins, the mailbox lock, streaming.

Performance notes (measured against stock twisted.mail.pop3, which stalls
~45 ms per RETR): every reply produced while handling one read is written in
one ``transport.write`` (pipelined commands included), and TCP_NODELAY is on,
so a small reply never waits for the peer's delayed ACK. Messages up to
``INLINE_LIMIT`` are read and sent in one piece; bigger ones are streamed
by a pull producer in ``CHUNK`` pieces, never read whole into memory.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import socket
import time

from twisted.cred import credentials, error as cred_error
from twisted.cred.portal import IRealm
from twisted.internet import interfaces, protocol, threads
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import Interface, implementer

from twisted_netapps.addresses import format_peer, host_of, is_loopback
from twisted_netapps.fileio import fsync_directory
from twisted_netapps.logins import LoginGuard, LoginRefused
from twisted_netapps.mail.pop3 import core
from twisted_netapps.mail.store.mailbox import MaildirFolder
from twisted_netapps.mail.store.maildir import MailStore
from twisted_netapps.mail.pop3.apop import ApopCredentials, load_secrets

log = Logger(namespace="netapps.pop3")

INLINE_LIMIT = 256 * 1024
CHUNK = 256 * 1024
LOCK_FILE = "netapps-pop3.lock"
#: What a connection over the frame's limits is told before it is closed.
TOO_MANY_CONNECTIONS = b"-ERR [SYS/TEMP] too many connections, try again later\r\n"
_timestamp_counter = itertools.count(1)


class IPop3Maildrop(Interface):
    """Avatar interface: a user's INBOX for one POP3 session."""


@implementer(IPop3Maildrop)
class Maildrop:
    def __init__(self, user: str, folder: MaildirFolder) -> None:
        self.user = user
        self.folder = folder


@implementer(IRealm)
class Pop3Realm:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    def requestAvatar(self, avatarId, mind, *interfaces_):
        if IPop3Maildrop not in interfaces_:
            raise NotImplementedError("POP3 realm serves IPop3Maildrop only")
        user = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return IPop3Maildrop, Maildrop(user, MaildirFolder(self.store.maildir(user))), lambda: None


class MailboxLock:
    """Exclusive per-mailbox lock (flock on a file in the Maildir): one POP3 session at a time,
    across processes too. Released on close or when the process dies."""

    def __init__(self, folder: MaildirFolder) -> None:
        self.path = folder.path / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def apply_update(folder: MaildirFolder, deleted: list, retrieved: list) -> int:
    """UPDATE phase (blocking; run in a thread): remove *deleted*, flag *retrieved* seen.

    Returns how many deletions failed. Directories are fsync'd so a
    removal the client was told about stays removed.
    """
    failures = 0
    for message in deleted:
        try:
            folder.remove(message.ref)
        except OSError:
            failures += 1
    if retrieved:
        current = {m.uid: m for m in folder.scan()}  # one listing, not one per message
        for message in retrieved:
            found = current.get(message.uid)
            if found is None or "S" in found.flags:
                continue
            try:
                folder.set_flags(found, found.flags + "S")
            except OSError:
                pass  # the \Seen flag is a courtesy; a vanished message is fine
    if deleted or retrieved:
        for subdir in ("new", "cur"):
            fsync_directory(folder.path / subdir)
    return failures


class _MessageStreamer:
    """Pull producer sending one big message in chunks, dot-stuffed.

    Twisted calls :meth:`resumeProducing` each time the transport's buffer
    has drained; every call must hand its chunk to the transport itself (not
    only queue it in the protocol), or the buffer never drains again and the
    transfer stalls after the first chunk.
    """

    def __init__(self, proto: "Pop3Protocol", handle) -> None:
        self.proto = proto
        self.handle = handle
        self.encoder = core.MessageEncoder()

    def resumeProducing(self) -> None:
        proto = self.proto
        chunk = self.handle.read(CHUNK)
        proto.resetTimeout()
        if chunk:
            proto.write(self.encoder.feed(chunk))
            proto.flush()
            return
        proto.write(self.encoder.finish())
        self.handle.close()
        proto.transport.unregisterProducer()
        proto.stream_done()

    def stopProducing(self) -> None:
        # The connection is gone mid-stream: connectionLost follows and frees the lock.
        self.handle.close()


@implementer(interfaces.IHalfCloseableProtocol)
class Pop3Protocol(protocol.Protocol, TimeoutMixin):
    def __init__(self, factory: "Pop3Factory") -> None:
        self.factory = factory
        self._peer_done = False
        self.callLater = factory.reactor.callLater
        self.buffer = core.LineBuffer(factory.max_line)
        self._out: list[bytes] = []
        self._streaming = False
        self._closing = False
        self.maildrop: Maildrop | None = None
        self.lock: MailboxLock | None = None
        self.tls_active = False
        self._raw_socket = None

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        f = self.factory
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (UNIX socket)
        # Direct sends (see _send) only on a plain Twisted TCP transport, never under TLS.
        transport = self.transport
        plain_tcp = all(hasattr(transport, a) for a in ("socket", "dataBuffer", "_tempDataLen", "producer", "TLS"))
        self._raw_socket = transport.socket if plain_tcp and not transport.TLS else None
        peer = self.transport.getPeer()
        self.peer = format_peer(peer)
        self.host = host_of(peer)
        self.loopback = is_loopback(peer)
        self.setTimeout(f.idle_timeout)
        self.session = core.Pop3Session(self._policy())
        self.write(self.session.greeting())
        self.flush()

    def _policy(self) -> core.Pop3Policy:
        f = self.factory
        timestamp = None
        if f.apop and load_secrets(f.apop_secrets_path):
            timestamp = f"<{os.getpid()}.{next(_timestamp_counter)}.{int(time.time())}@{f.hostname}>"
        plaintext = {"always": True, "loopback": self.loopback or self.tls_active}.get(f.plaintext_auth, self.tls_active)
        return core.Pop3Policy(
            hostname=f.hostname,
            apop_timestamp=timestamp,
            tls_available=f.tls_options is not None,
            tls_active=self.tls_active,
            plaintext_allowed=plaintext,
            max_bad_commands=f.max_bad_commands,
            max_login_failures=f.max_login_failures,
        )

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        if self.lock is not None and self.session.state != core.UPDATE:
            # A dropped session deletes nothing (no UPDATE phase). An UPDATE
            # already running keeps the lock until it has finished.
            self.lock.release()
            self.lock = None

    def timeoutConnection(self) -> None:
        log.info("pop3: {peer} idle for {t}s, closing", peer=self.peer, t=self.factory.idle_timeout)
        if self._streaming:
            # The client stopped reading mid-message: a graceful close would
            # wait for a buffer that never drains (and keep the lock).
            self.transport.abortConnection()
            return
        self.transport.write(b"-ERR idle timeout, closing\r\n")
        self.transport.loseConnection()

    # ------------------------------------------------------------ output

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.factory.stats.incr("bytes_out", len(data))
            self._send(data)

    def _send(self, data: bytes) -> None:
        """Write *data*, straight to the socket when nothing is queued before it.

        transport.write() only queues: the bytes leave one reactor turn later,
        after two epoll_ctl calls. POP3 clients wait for each reply (poplib
        RETR after RETR), so that turn is most of our per-message latency;
        profiling the RETR benchmark showed it. When Twisted's buffer is empty
        (and no TLS or producer is involved) we send directly, and hand any
        unsent rest to transport.write() so ordering and back-pressure stay Twisted's.
        """
        transport = self.transport
        sock = self._raw_socket
        if (
            sock is not None
            and not transport.dataBuffer
            and not transport._tempDataLen
            and transport.producer is None
            and not transport.disconnecting
        ):
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted's write path see and report the error
            data = data[sent:]
        if data:
            transport.write(data)

    # ------------------------------------------------------------ input

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        stats = self.factory.stats
        stats.incr("bytes_in", len(data))
        # Download loops send "RETR n" and wait, one at a time: answer a lone,
        # plainly valid RETR without the general line/command machinery
        # (measured: a third of our per-message CPU in the RETR benchmark).
        if (
            data[:5].upper() == b"RETR "
            and data.endswith(b"\r\n")
            and data.find(b"\n") == len(data) - 1
            and not (self._streaming or self._closing)
            and self.buffer.is_empty()
        ):
            event = self.session.quick_retr(data[5:-2])
            if event is not None:
                stats.incr("requests")
                if not self._out and self._send_small(event):
                    return
                self.send_message(event)
                self.flush()
                return
        self.buffer.feed(data)
        self.process()

    def _send_small(self, event: core.SendMessage) -> bool:
        """The RETR fast path's reply: one read, one encode, one send. False if
        the message is too big or gone (send_message then does it the long way)."""
        message = event.message
        try:
            small = self.maildrop.folder.read_small(message.ref, INLINE_LIMIT)
        except FileNotFoundError:
            return False
        if small is None:
            return False
        data, message.ref = small
        reply = core.encode_message(data, message.ref.size, event.ok)
        stats = self.factory.stats
        stats.incr("messages_retrieved")
        stats.incr("bytes_out", len(reply))
        self._send(reply)
        return True

    def process(self) -> None:
        """Handle buffered lines in order until one needs to wait (login, update, streaming)."""
        while not (self._closing or self._streaming or self.session.waiting):
            line = self.buffer.next_line()
            if line is None:
                break
            if line is core.OVERLONG:
                events = self.session.line_too_long()
                self.factory.stats.incr("errors")
            else:
                self.factory.stats.incr("requests")
                events = self.session.receive_line(line)
            self.handle(events)
        self.flush()
        if self._peer_done and not (self._closing or self._streaming or self.session.waiting):
            # The client half-closed and everything it sent has been answered.
            self._closing = True
            self.transport.loseConnection()

    # IHalfCloseableProtocol: `printf 'USER..\r\nPASS..\r\nRETR 1\r\nQUIT\r\n' | nc -N`
    # sends FIN right after its commands; they are still all answered (and a
    # QUIT still runs the UPDATE phase) before we close.

    def readConnectionLost(self) -> None:
        self._peer_done = True
        self.process()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def handle(self, events: list) -> None:
        for event in events:
            if type(event) is core.SendMessage:  # the hot path first
                self.send_message(event)
            elif isinstance(event, core.Send):
                if event.data.startswith(b"-ERR"):
                    self.factory.stats.incr("errors")
                self.write(event.data)
            elif isinstance(event, core.SendMessage):
                self.send_message(event)
            elif isinstance(event, core.CheckPassword):
                self.login(credentials.UsernamePassword(event.user.encode("utf-8"), event.password.encode("utf-8")), event.user)
            elif isinstance(event, core.CheckApop):
                self.login(ApopCredentials(event.timestamp, event.user, event.digest), event.user)
            elif isinstance(event, core.StartTls):
                self.start_tls()
            elif isinstance(event, core.Commit):
                self.commit(event)
            elif isinstance(event, core.Close):
                self.flush()
                self._closing = True
                self.transport.loseConnection()

    # ------------------------------------------------------------ STLS

    def start_tls(self) -> None:
        self.flush()
        self._raw_socket = None  # from now on every byte goes through the TLS layer
        # Anything pipelined after STLS was sent in the clear: drop it (CVE-2011-0411 class).
        self.buffer.clear()
        self.transport.startTLS(self.factory.tls_options)
        self.tls_active = True
        self.session.policy = self._policy()
        self.session.tls_started()
        log.info("pop3: {peer} started TLS", peer=self.peer)

    # ------------------------------------------------------------ login

    def login(self, creds, user: str) -> None:
        f = self.factory
        d = f.logins.login(f.portal, creds, self.host, user, IPop3Maildrop, failure_delay=f.login_failure_delay)
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(user,))
        d.addErrback(self._login_error, user)

    def _logged_in(self, result) -> None:
        _iface, maildrop, _logout = result
        if self._closing or not self.transport.connected:
            return
        lock = MailboxLock(maildrop.folder)
        if not lock.acquire():
            log.info("pop3: {peer}: mailbox of {user} in use", peer=self.peer, user=maildrop.user)
            self._resume(self.session.login_rejected(in_use=True))
            return
        try:
            files = maildrop.folder.scan()
            messages = [
                core.Pop3Message(i, core.uidl_for(m.uid), maildrop.folder.size(m), m) for i, m in enumerate(files, 1)
            ]
        except OSError:
            lock.release()
            log.failure("pop3: {peer}: cannot read the mailbox of {user}", peer=self.peer, user=maildrop.user)
            self._resume(self.session.login_rejected(temporary=True))
            return
        self.lock, self.maildrop = lock, maildrop
        self.factory.stats.incr("logins")
        log.info("pop3: {peer}: {user} logged in, {n} messages", peer=self.peer, user=maildrop.user, n=len(messages))
        self._resume(self.session.login_accepted(maildrop.user, messages))

    def _login_failed(self, failure, user: str) -> None:
        if failure.check(LoginRefused):
            self.factory.stats.incr("login_refused")
            self._resume(self.session.login_rejected(temporary=True))
            return
        failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
        self.factory.stats.incr("login_failures")
        log.info("pop3: {peer}: failed login for {user}", peer=self.peer, user=user)
        # (the login guard has already delayed this answer: guessing costs the guesser time)
        self._resume(self.session.login_rejected())

    def _login_error(self, failure, user: str) -> None:
        log.failure("pop3: {peer}: login for {user} failed unexpectedly", failure, peer=self.peer, user=user)
        self._resume(self.session.login_rejected(temporary=True))

    def _resume(self, events: list) -> None:
        if not self.transport.connected:
            return
        self.handle(events)
        self.process()

    # ------------------------------------------------------------ RETR / TOP

    def send_message(self, event: core.SendMessage) -> None:
        folder = self.maildrop.folder
        try:
            if event.top_lines is None:
                small = folder.read_small(event.message.ref, INLINE_LIMIT)
                if small is not None:
                    data, event.message.ref = small
                    self.write(event.ok)
                    self.write(core.encode_message(data, event.message.ref.size))
                    self.factory.stats.incr("messages_retrieved")
                    return
            handle, found = folder.open(event.message.ref)
        except FileNotFoundError:
            self.write(b"-ERR [SYS/PERM] message was removed by another client\r\n")
            return
        event.message.ref = found
        self.write(event.ok)
        if event.top_lines is not None:
            with handle:
                data = core.top_of_message(handle, event.top_lines)
            self.write(core.encode_message(data))
            return
        self.flush()
        self._streaming = True
        self.transport.registerProducer(_MessageStreamer(self, handle), False)

    def stream_done(self) -> None:
        self._streaming = False
        self.factory.stats.incr("messages_retrieved")
        self.process()

    # ------------------------------------------------------------ UPDATE

    def commit(self, event: core.Commit) -> None:
        self.session.waiting = True
        self.flush()
        d = self.factory.run_blocking(apply_update, self.maildrop.folder, event.deleted, event.retrieved)

        def done(failures: int) -> None:
            self.factory.stats.incr("messages_deleted", len(event.deleted) - failures)
            log.info("pop3: {peer}: {user} quit, {n} messages deleted", peer=self.peer, user=self.maildrop.user, n=len(event.deleted) - failures)
            self._release_lock()
            self._resume(self.session.update_done(failures))

        def failed(failure) -> None:
            log.failure("pop3: {peer}: update phase failed", failure, peer=self.peer)
            self._release_lock()
            self._resume(self.session.update_done(len(event.deleted) or 1))

        d.addCallbacks(done, failed)

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class Pop3Factory(protocol.Factory):
    noisy = False

    def __init__(self, *, portal, stats, reactor, tls_options, apop_secrets_path, settings, run_blocking=None,
                 logins=None) -> None:
        self.portal = portal
        self.logins = logins or LoginGuard(reactor)
        # Blocking storage work (the UPDATE phase's unlinks and fsyncs) runs here: the thread pool.
        self.run_blocking = run_blocking or (
            lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
        )
        self.stats = stats
        self.reactor = reactor
        self.tls_options = tls_options
        self.apop_secrets_path = apop_secrets_path
        self.apop = settings.apop
        self.hostname = settings.hostname or socket.gethostname() or "localhost"
        self.idle_timeout = settings.idle_timeout
        self.max_line = settings.max_line
        self.max_bad_commands = settings.max_bad_commands
        self.max_login_failures = settings.max_login_failures
        self.login_failure_delay = settings.login_failure_delay
        self.plaintext_auth = settings.plaintext_auth

    def buildProtocol(self, addr):
        return Pop3Protocol(self)
