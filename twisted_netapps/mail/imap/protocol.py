"""The IMAP server's Twisted adapter: bytes between the transport and :class:`~twisted_netapps.mail.imap.core.ImapCore`.

Why our own command layer rather than ``twisted.mail.imap4.IMAP4Server``:
every change real clients needed (UIDPLUS, LITERAL+, ENABLE/UTF8=ACCEPT,
SASL-IR, ID, keywords, ``HEADER.FIELDS`` echoed as sent, 8-bit bytes in a
command answered with BAD instead of a traceback, commands queued behind a
LOGIN/APPEND/COPY, nothing kept across STARTTLS) lands in the stock server's
private members (``_respond``, ``_selectWork``, ``_cbSelectWork``,
``_unblock``/``blocked``, ``_FetchParser``, ``parseState``) or in its
parser, which decodes command names as ASCII and raises. A subclass held
together by those would break on any Twisted release; the public hooks
(``do_``/``arg_`` methods, ``IMailbox``) cannot express command ordering or
the literal rules. So the protocol is ours, sans I/O (core.py, the contract
of COMMON.md), and this module only moves bytes and carries out the core's
requests:

- ``Send``/``Close``/``StartTls`` go to the transport;
- ``CheckPassword`` logs in through the cred portal (failures answered after
  ``login_failure_delay``, a timer, not a sleep);
- ``Run`` goes to :class:`~twisted_netapps.mail.imap.session.ImapSession`,
  whose disk work runs in the thread pool; its result goes back to the core.

Events are executed from a queue, so a long pipeline whose commands complete
synchronously does not recurse. While a command is running and more than
:data:`MAX_HELD_INPUT` bytes of later commands are waiting, the transport
stops reading. A FETCH writes as a streaming producer: it waits while the
transport's buffer is full. Timeouts: ``login_timeout`` from the connection
(not restarted by commands), then ``idle_timeout`` from the last byte
received. Replies are small and frequent, so TCP_NODELAY is set.
"""

from __future__ import annotations

import collections

from twisted.cred import credentials, error
from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps import __version__
from twisted_netapps.addresses import format_peer, host_of, is_loopback
from twisted_netapps.logins import LoginGuard, LoginRefused
from twisted_netapps.mail.plaintext import plaintext_allowed
from twisted_netapps.mail.imap.account import IImapAccount
from twisted_netapps.mail.imap.core import ImapCore
from twisted_netapps.mail.imap.events import CheckPassword, Close, IdleDone, Result, Run, Send, StartTls
from twisted_netapps.mail.imap.session import ImapSession

log = Logger(namespace="netapps.imap")

MAX_HELD_INPUT = 256 * 1024
#: What a connection over the frame's limits is told before it is closed.
TOO_MANY_CONNECTIONS = b"* BYE [UNAVAILABLE] too many connections, try again later\r\n"


@implementer(interfaces.IHalfCloseableProtocol, interfaces.IPushProducer)
class ImapServer(protocol.Protocol):
    def __init__(self, factory: "ImapFactory") -> None:
        self.factory = factory
        self.core: ImapCore | None = None
        self.session: ImapSession | None = None
        self.peer = "?"
        self._events: collections.deque = collections.deque()
        self._executing = False
        self._timer = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[defer.Deferred] = []
        self._counted = (0, 0)
        self._gone = False

    # The selected mailbox (tests and the session share it).
    @property
    def mbox(self):
        return self.session.view if self.session is not None else None

    @property
    def gone(self) -> bool:
        """The connection is closed: nothing written now reaches anyone."""
        return self._gone

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        peer = self.transport.getPeer()
        self.peer = format_peer(peer)
        self.host = host_of(peer)
        policy = self.factory.plaintext_auth
        self.core = ImapCore(
            max_line=self.factory.max_line,
            max_append=self.factory.max_message_size,
            plaintext_without_tls=plaintext_allowed(policy, tls=False, loopback=is_loopback(peer)),
            tls_available=self.factory.tls_options is not None
            and interfaces.ITLSTransport(self.transport, None) is not None,
            version=__version__.encode("ascii"),
        )
        self._timer = self.factory.reactor.callLater(self.factory.login_timeout, self._timed_out)
        self.execute(self.core.greeting())

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.incr("bytes_in", len(data))
        if self.session is not None:
            self._restart_idle_timer()
        self.execute(self.core.receive_data(data))
        if self.core.busy and self.core.buffered > MAX_HELD_INPUT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()

    def readConnectionLost(self) -> None:
        # IHalfCloseableProtocol: `printf '...' | nc -N` still gets every answer.
        self.execute(self.core.receive_eof())

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self._gone = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.session is not None:
            self.session.connection_lost()
        self._release_writers()

    def _timed_out(self) -> None:
        self.transport.write(b"* BYE Autologout; connection idle too long\r\n")
        self.transport.loseConnection()

    def _restart_idle_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.factory.idle_timeout)
        elif not self._gone:
            self._timer = self.factory.reactor.callLater(self.factory.idle_timeout, self._timed_out)

    # ------------------------------------------------------------ the core's events

    def execute(self, events) -> None:
        self._events.extend(events)
        if self._executing:
            return
        self._executing = True
        try:
            while self._events:
                self._handle(self._events.popleft())
        finally:
            self._executing = False
        self._count()

    def _handle(self, event) -> None:
        if isinstance(event, Send):
            self.write(event.data)
        elif isinstance(event, Run):
            self._run(event.request)
        elif isinstance(event, CheckPassword):
            self._login(event)
        elif isinstance(event, IdleDone):
            self.session.idle_done()
        elif isinstance(event, StartTls):
            self.transport.startTLS(self.factory.tls_options)
            self.core.tls_started()
            log.info("imap: {peer} started TLS", peer=self.peer)
        elif isinstance(event, Close):
            self.transport.loseConnection()

    def _count(self) -> None:
        commands, errors = self.core.commands, self.core.errors
        self.factory.stats.incr("requests", commands - self._counted[0])
        self.factory.stats.incr("errors", errors - self._counted[1])
        self._counted = (commands, errors)

    def _run(self, request) -> None:
        d = defer.ensureDeferred(self.session.run(request))
        d.addErrback(self._command_crashed, request)
        d.addCallback(self._command_done)

    def _command_done(self, result: Result) -> None:
        self.execute(self.core.command_done(result))
        if self._reading_paused and not (self.core.busy and self.core.buffered > MAX_HELD_INPUT):
            self._reading_paused = False
            self.transport.resumeProducing()
        if self.session is not None and not self._gone:
            self._restart_idle_timer()  # a long FETCH is not idleness

    def _command_crashed(self, failure, request) -> Result:
        # A bug, not bad input (the core and session turn that into BAD/NO):
        # log it with its traceback, keep the connection and the command order.
        log.failure("imap: {peer}: {request} crashed", failure, peer=self.peer, request=type(request).__name__)
        return Result("NO", "internal error", b"SERVERBUG")

    # ------------------------------------------------------------ login

    def _login(self, event: CheckPassword) -> None:
        creds = credentials.UsernamePassword(event.user.encode("utf-8"), event.password)
        f = self.factory
        d = f.logins.login(f.portal, creds, self.host, event.user, IImapAccount, failure_delay=f.login_failure_delay)
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(event.user,))

    def _logged_in(self, result) -> None:
        _interface, account, _logout = result
        self.factory.stats.incr("logins")
        log.info("imap: {peer}: {user} logged in", peer=self.peer, user=account.user)
        self.session = ImapSession(account, self.factory.registry, self, utf8=lambda: self.core.utf8, peer=self.peer)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._restart_idle_timer()
        self.execute(self.core.login_done(True))

    def _login_failed(self, failure, user: str) -> None:
        if failure.check(LoginRefused):
            self.factory.stats.incr("login_refused")
            if not self._gone:
                self.execute(self.core.login_done(False, b"UNAVAILABLE", "too many failed logins, try later"))
            return
        self.factory.stats.incr("login_failures")
        if not failure.check(error.UnauthorizedLogin, error.UnhandledCredentials):
            log.failure("imap: {peer}: login of {user} failed", failure, peer=self.peer, user=user)
        else:
            log.info("imap: {peer}: failed login for {user}", peer=self.peer, user=user)
        # (the login guard has already delayed this answer; commands behind it waited too)
        if not self._gone:
            self.execute(self.core.login_done(False))

    # ------------------------------------------------------------ output (the session's too)

    def write(self, data: bytes) -> None:
        self.factory.stats.incr("bytes_out", len(data))
        self.transport.write(data)

    def write_sequence(self, chunks: list[bytes]) -> None:
        self.factory.stats.incr("bytes_out", sum(len(c) for c in chunks))
        self.transport.writeSequence(chunks)

    def start_stream(self) -> None:
        """A FETCH begins: be told (pauseProducing) when the client is slow to read."""
        if not self._gone:
            self.transport.registerProducer(self, True)

    def end_stream(self) -> None:
        if not self._gone:
            self.transport.unregisterProducer()
        self._writing_paused = False
        self._release_writers()

    def drained(self) -> defer.Deferred:
        """Fires once the transport wants more (at once unless it paused us)."""
        if not self._writing_paused or self._gone:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drain_waiters.append(d)
        return d

    def _release_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)

    # IPushProducer (registered only while a FETCH writes)
    def pauseProducing(self) -> None:
        self._writing_paused = True

    def resumeProducing(self) -> None:
        self._writing_paused = False
        self._release_writers()

    def stopProducing(self) -> None:
        self._gone = True
        self._release_writers()


class ImapFactory(protocol.Factory):
    """Builds :class:`ImapServer` connections."""

    noisy = False

    def __init__(self, *, portal, stats, reactor, tls_options, settings, registry, logins=None) -> None:
        self.portal = portal
        self.logins = logins or LoginGuard(reactor)
        self.stats = stats
        self.reactor = reactor
        self.tls_options = tls_options
        self.registry = registry
        self.login_timeout = settings.login_timeout
        self.idle_timeout = settings.idle_timeout
        self.max_line = settings.max_line
        self.max_message_size = settings.max_message_size
        self.login_failure_delay = settings.login_failure_delay
        self.plaintext_auth = settings.plaintext_auth

    def buildProtocol(self, addr):
        return ImapServer(self)
