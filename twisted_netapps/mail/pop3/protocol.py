"""Twisted adapter for the POP3 core: sockets, logins, the mailbox lock, reading and streaming.

Thin by design: :class:`~twisted_netapps.mail.pop3.core.Pop3Session` decides
everything; this protocol feeds it bytes, carries out its requests and
reports back. Nothing waits for the disk on the reactor thread: the login's
lock and scan, TOP, big messages' chunks and the UPDATE phase run in the disk
pool, and a message is read on the reactor only when the kernel's caches hold
it, else in the pool (:mod:`.reader`); the session answers strictly in
command order meanwhile.

Performance notes (measured against stock twisted.mail.pop3, which stalls
~45 ms per RETR): every reply produced while handling one read is written
together (pipelined commands included), TCP_NODELAY is on, and replies go
out through :class:`~.sending.ReplyWriter` (straight to the socket when
nothing is queued). Messages up to ``INLINE_LIMIT`` are sent in one piece;
bigger ones are streamed in ``CHUNK`` pieces, never read whole into memory.
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import time

from twisted.cred import credentials, error as cred_error
from twisted.internet import interfaces, protocol, threads
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from twisted_netapps.addresses import format_peer, host_of, is_loopback
from twisted_netapps.logins import LoginGuard, LoginRefused
from twisted_netapps.mail.pop3 import core
from twisted_netapps.mail.pop3.apop import ApopCredentials, ApopSecrets
from twisted_netapps.mail.pop3.maildrop import (
    IPop3Maildrop,
    MailboxInUse,
    apply_update,
    open_maildrop,
    open_message,
    read_top,
)
from twisted_netapps.mail.pop3.multiline import MessageEncoder, encode_message, top_of_message
from twisted_netapps.mail.pop3.reader import MessageReader
from twisted_netapps.mail.pop3.sending import ReplyWriter
from twisted_netapps.mail.session_deadlines import SessionDeadlines

log = Logger(namespace="netapps.pop3")

INLINE_LIMIT = 256 * 1024
CHUNK = 256 * 1024
#: What a connection over the frame's limits is told before it is closed.
TOO_MANY_CONNECTIONS = b"-ERR [SYS/TEMP] too many connections, try again later\r\n"
_timestamp_counter = itertools.count(1)


@implementer(interfaces.IPushProducer)
class _MessageStreamer:
    """Push producer sending one big message in ``CHUNK`` pieces, dot-stuffed;
    each chunk is read in the disk pool, the next one only while the transport wants more."""

    def __init__(self, proto: "Pop3Protocol", handle) -> None:
        self.proto = proto
        self.handle = handle
        self.encoder = MessageEncoder()
        self.paused = False
        self.reading = False
        self.done = False

    def start(self) -> None:
        self.proto.writer.start_streaming(self, True)
        self._next()

    def _next(self) -> None:
        if self.done or self.paused or self.reading:
            return
        self.reading = True
        d = self.proto.factory.run_blocking(self.handle.read, CHUNK)
        d.addCallbacks(self._chunk, self._failed)

    def _chunk(self, chunk: bytes) -> None:
        self.reading = False
        if self.done:
            return
        proto = self.proto
        proto.resetTimeout()
        if chunk:
            proto.writer.write(self.encoder.feed(chunk))
            self._next()
            return
        proto.writer.write(self.encoder.finish())
        self._finish()
        proto.writer.stop_streaming()
        proto.stream_done()

    def _failed(self, failure) -> None:
        self.reading = False
        if self.done:
            return
        # Mid-message there is no reply left to give: the client sees a cut message and a closed connection.
        log.failure("pop3: {peer}: reading a message failed mid-stream", failure, peer=self.proto.peer)
        self._finish()
        self.proto.transport.abortConnection()

    def _finish(self) -> None:
        self.done = True
        self.handle.close()  # a read-only file: closing does not wait on the disk

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._next()

    def stopProducing(self) -> None:
        # The connection is gone mid-stream: connectionLost follows and frees the lock.
        if not self.done:
            self._finish()


@implementer(interfaces.IHalfCloseableProtocol)
class Pop3Protocol(protocol.Protocol, TimeoutMixin):
    def __init__(self, factory: "Pop3Factory") -> None:
        self.factory = factory
        self.callLater = factory.reactor.callLater
        self._out: list[bytes] = []
        self._closing = False
        self._lost = False
        self._paused = False
        self._lines_counted = 0
        self.folder = None
        self.lock = None
        self.reader: MessageReader | None = None
        self.user: str | None = None
        self.deadlines = SessionDeadlines(
            factory.reactor, self._deadline_passed, command=factory.command_deadline, login=factory.login_deadline
        )

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        f = self.factory
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (UNIX socket)
        self.writer = ReplyWriter(self.transport)
        peer = self.transport.getPeer()
        self.peer = format_peer(peer)
        self.host = host_of(peer)
        self.setTimeout(f.idle_timeout)
        self.session = core.Pop3Session(self._policy(is_loopback(peer)), f.max_line)
        self.deadlines.start_login()
        self._run(self.session.greeting())

    def _policy(self, loopback: bool) -> core.Pop3Policy:
        f = self.factory
        timestamp = None
        if f.apop and f.apop_secrets.available():
            timestamp = f"<{os.getpid()}.{next(_timestamp_counter)}.{int(time.time())}@{f.hostname}>"
        return core.Pop3Policy(
            hostname=f.hostname,
            apop_timestamp=timestamp,
            tls_available=f.tls_options is not None,
            plaintext_auth=f.plaintext_auth,
            loopback=loopback,
            max_bad_commands=f.max_bad_commands,
            max_login_failures=f.max_login_failures,
        )

    def connectionLost(self, reason) -> None:
        self._lost = True
        self.setTimeout(None)
        self.deadlines.cancel()
        if self.lock is not None and self.session.state is not core.State.UPDATE:
            # A dropped session deletes nothing (no UPDATE phase). An UPDATE
            # already running keeps the lock until it has finished.
            self._release_lock()

    def timeoutConnection(self) -> None:
        log.info("pop3: {peer} idle for {t}s, closing", peer=self.peer, t=self.factory.idle_timeout)
        self.factory.stats.incr("timeouts")
        if self.session.state is core.State.SENDING:
            # The client stopped reading mid-message: a graceful close would
            # wait for a buffer that never drains (and keep the lock).
            self.transport.abortConnection()
            return
        self._close_with(b"-ERR idle timeout, closing\r\n")

    def _deadline_passed(self, which: str) -> None:
        self.deadlines.report(which, "pop3", self.peer, self.factory.stats)
        self._close_with(b"-ERR [SYS/TEMP] %s time limit exceeded, closing\r\n" % which.encode())

    def _close_with(self, reply: bytes) -> None:
        if self._closing:
            return
        self._closing = True
        self.deadlines.cancel()
        self.writer.write(reply)
        self.transport.loseConnection()

    # ------------------------------------------------------------ input

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.factory.stats.incr("bytes_in", len(data))
        if self._closing:
            return
        self._run(self.session.receive_data(data))

    # IHalfCloseableProtocol: `printf 'USER..\r\nPASS..\r\nRETR 1\r\nQUIT\r\n' | nc -N`
    # sends FIN right after its commands; they are still all answered (and a
    # QUIT still runs the UPDATE phase) before we close.

    def readConnectionLost(self) -> None:
        if not self._closing:
            self._run(self.session.receive_eof())

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    # ------------------------------------------------------------ events

    def _run(self, events: list) -> None:
        """Carry out the session's events in order; replies of one turn go out together."""
        session = self.session
        stats = self.factory.stats
        for event in events:  # (the core's own fresh list: answers to requests are appended as they come)
            kind = type(event)
            if kind is core.SendMessage:  # the hot path first
                more = self._send_message(event)
                if more:
                    events += more
            elif kind is core.Send:
                if event.data.startswith(b"-ERR"):
                    stats.incr("errors")
                self._out.append(event.data)
            elif kind is core.CheckPassword:
                creds = credentials.UsernamePassword(event.user.encode("utf-8"), event.password.encode("utf-8"))
                self._login(creds, event.user)
            elif kind is core.CheckApop:
                self._login(ApopCredentials(event.timestamp, event.user, event.digest), event.user)
            elif kind is core.StartTls:
                events += self._start_tls()
            elif kind is core.Commit:
                self._commit(event)
            elif kind is core.Close:
                self._closing = True
                break
        self._flush()
        lines = session.lines
        if lines != self._lines_counted:
            stats.incr("requests", lines - self._lines_counted)
            self._lines_counted = lines
        if self._closing:
            self.deadlines.cancel()
            self.transport.loseConnection()
            return
        waiting = session.waiting
        if waiting is not self._paused:
            self._pause_while_waiting(waiting)
        partial = session.partial_line
        if partial or self.deadlines.running:  # else there is nothing to start or cancel
            self.deadlines.update(partial_line=partial, lines=lines, waiting=waiting)

    def _flush(self) -> None:
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self.factory.stats.incr("bytes_out", len(data))
            self.writer.write(data)

    def _pause_while_waiting(self, waiting: bool) -> None:
        """While the session waits on the disk or a login, stop reading: a pipelining
        client cannot pile up unbounded input meanwhile."""
        self._paused = waiting
        if waiting:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    def _resume(self, events_of) -> None:
        """A request finished: feed the answer back (unless the connection is gone)."""
        if self._closing or self._lost:
            return
        self._run(events_of())

    # ------------------------------------------------------------ STLS

    def _start_tls(self) -> list:
        self._flush()
        self.writer.stop_direct()  # from now on every byte goes through the TLS layer
        self.transport.startTLS(self.factory.tls_options)
        log.info("pop3: {peer} started TLS", peer=self.peer)
        return self.session.tls_started()

    # ------------------------------------------------------------ login

    def _login(self, creds, user: str) -> None:
        f = self.factory
        d = f.logins.login(f.portal, creds, self.host, user, IPop3Maildrop, failure_delay=f.login_failure_delay)
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(user,))
        d.addErrback(self._login_error, user)

    def _logged_in(self, result) -> None:
        _iface, maildrop, _logout = result
        d = self.factory.run_blocking(open_maildrop, maildrop)
        d.addCallbacks(self._opened, self._open_failed, callbackArgs=(maildrop.user,), errbackArgs=(maildrop.user,))

    def _opened(self, opened, user: str) -> None:
        folder, lock, messages = opened
        if self._closing or self._lost:
            lock.release()  # the client left while we were opening its mailbox
            return
        self.folder, self.lock, self.user = folder, lock, user
        self.reader = MessageReader(folder, messages, self.factory.run_blocking, inline_limit=INLINE_LIMIT)
        self.factory.stats.incr("logins")
        self.deadlines.logged_in()
        log.info("pop3: {peer}: {user} logged in, {n} messages", peer=self.peer, user=user, n=len(messages))
        self._resume(lambda: self.session.login_accepted(user, messages))

    def _open_failed(self, failure, user: str) -> None:
        if failure.check(MailboxInUse):
            log.info("pop3: {peer}: mailbox of {user} in use", peer=self.peer, user=user)
            self._resume(lambda: self.session.login_rejected(in_use=True))
            return
        failure.trap(OSError)
        log.warn("pop3: {peer}: cannot read the mailbox of {user}: {error}", peer=self.peer, user=user,
                 error=failure.value)
        self._resume(lambda: self.session.login_rejected(temporary=True))

    def _login_failed(self, failure, user: str) -> None:
        if failure.check(LoginRefused):
            self.factory.stats.incr("login_refused")
            self._resume(lambda: self.session.login_rejected(temporary=True))
            return
        failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
        self.factory.stats.incr("login_failures")
        log.info("pop3: {peer}: failed login for {user}", peer=self.peer, user=user)
        # (the login guard has already delayed this answer: guessing costs the guesser time)
        self._resume(lambda: self.session.login_rejected())

    def _login_error(self, failure, user: str) -> None:
        log.failure("pop3: {peer}: login for {user} failed unexpectedly", failure, peer=self.peer, user=user)
        self._resume(lambda: self.session.login_rejected(temporary=True))

    # ------------------------------------------------------------ RETR / TOP

    def _send_message(self, event: core.SendMessage) -> list | None:
        """Send a RETR/TOP reply: the events that follow when done now, None when it continues later."""
        result = self.reader.take(event.message)
        if event.top_lines is not None:
            if type(result) is tuple:  # cached: the top is cut here (header scans send TOP n 0 for each)
                data, event.message.ref = result
                self._out += [event.ok, encode_message(top_of_message(io.BytesIO(data), event.top_lines))]
                return self.session.message_sent()
            d = self.factory.run_blocking(read_top, self.folder, event.message.ref, event.top_lines)
            d.addCallbacks(self._top_read, self._read_failed, callbackArgs=(event,))
            return None
        if result is NotImplemented:  # not in the kernel's caches: read in the pool (which warms the next ones)
            self.factory.stats.incr("read_waits")
            d = self.reader.read(event.message)
            d.addCallbacks(self._retr_read, self._read_failed, callbackArgs=(event,))
            return None
        return self._retr_reply(event, result)

    def _retr_read(self, result, event: core.SendMessage) -> None:
        if self._closing or self._lost:
            return
        more = self._retr_reply(event, result)
        if more is not None:
            self._run(more)

    def _retr_reply(self, event: core.SendMessage, result) -> list | None:
        message = event.message
        if isinstance(result, tuple):
            data, message.ref = result
            self._out.append(encode_message(data, message.ref.size, event.ok))
            self.factory.stats.incr("messages_retrieved")
            return self.session.message_sent()
        if isinstance(result, FileNotFoundError):
            return self.session.message_sent(missing=True)
        if isinstance(result, OSError):
            log.warn("pop3: {peer}: cannot read message {n} of {user}: {error}", peer=self.peer,
                     n=message.number, user=self.user, error=result)
            return self.session.message_sent(unreadable=True)
        # Too big to send in one piece: stream it.
        d = self.factory.run_blocking(open_message, self.folder, message.ref)
        d.addCallbacks(self._stream, self._read_failed, callbackArgs=(event,))
        return None

    def _stream(self, opened, event: core.SendMessage) -> None:
        handle, event.message.ref = opened
        if self._closing or self._lost:
            handle.close()
            return
        self._out.append(event.ok)
        self._flush()
        _MessageStreamer(self, handle).start()

    def stream_done(self) -> None:
        self.factory.stats.incr("messages_retrieved")
        self._resume(self.session.message_sent)

    def _top_read(self, result, event: core.SendMessage) -> None:
        body, event.message.ref = result
        self._out += [event.ok, body]
        self._resume(self.session.message_sent)

    def _read_failed(self, failure) -> None:
        if failure.check(FileNotFoundError):
            self._resume(lambda: self.session.message_sent(missing=True))
            return
        failure.trap(OSError)
        log.warn("pop3: {peer}: cannot read a message of {user}: {error}", peer=self.peer, user=self.user,
                 error=failure.value)
        self._resume(lambda: self.session.message_sent(unreadable=True))

    # ------------------------------------------------------------ UPDATE

    def _commit(self, event: core.Commit) -> None:
        self._flush()
        d = self.factory.run_blocking(apply_update, self.folder, event.deleted, event.retrieved)

        def done(failures: int) -> None:
            self.factory.stats.incr("messages_deleted", len(event.deleted) - failures)
            log.info("pop3: {peer}: {user} quit, {n} messages deleted", peer=self.peer, user=self.user,
                     n=len(event.deleted) - failures)
            self._release_lock()
            self._resume(lambda: self.session.update_done(failures))

        def failed(failure) -> None:
            failure.trap(OSError)
            log.warn("pop3: {peer}: update phase of {user} failed: {error}", peer=self.peer, user=self.user,
                     error=failure.value)
            self._release_lock()
            self._resume(lambda: self.session.update_done(len(event.deleted) or 1))

        d.addCallbacks(done, failed)

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class Pop3Factory(protocol.Factory):
    noisy = False

    def __init__(self, *, portal, stats, reactor, tls_options, apop_secrets, settings, run_blocking=None,
                 logins=None) -> None:
        self.portal = portal
        self.logins = logins or LoginGuard(reactor)
        # Blocking storage work (mailbox scans, reads, the UPDATE phase) runs here: the disk pool.
        self.run_blocking = run_blocking or (
            lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
        )
        self.stats = stats
        self.reactor = reactor
        self.tls_options = tls_options
        self.apop_secrets: ApopSecrets = apop_secrets
        self.apop = settings.apop
        self.hostname = settings.hostname or socket.gethostname() or "localhost"
        self.idle_timeout = settings.idle_timeout
        self.command_deadline = settings.command_deadline
        self.login_deadline = settings.login_deadline
        self.max_line = settings.max_line
        self.max_bad_commands = settings.max_bad_commands
        self.max_login_failures = settings.max_login_failures
        self.login_failure_delay = settings.login_failure_delay
        self.plaintext_auth = settings.plaintext_auth

    def buildProtocol(self, addr):
        return Pop3Protocol(self)
