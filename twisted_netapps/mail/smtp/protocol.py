"""Twisted adapter for the SMTP session: sockets, timeouts, TLS, logins, delivery.

Thin by design: :class:`~twisted_netapps.mail.smtp.core.ServerSession` decides
everything; this protocol moves bytes, runs the requests the session emits
(AUTH through ``twisted.cred``, STARTTLS, durable delivery) and feeds their
results back. Replies produced by one read are written with one
``write`` (pipelined replies coalesce), and TCP_NODELAY is on, so there are
no Nagle/delayed-ACK stalls. Two kinds of timers: the idle timeout
(``command_timeout``/``data_timeout``, silence) and the session deadlines
(``command_deadline``/``data_deadline``/``login_deadline``, progress; see
:mod:`twisted_netapps.mail.session_deadlines`).
"""

from __future__ import annotations

from twisted.cred import credentials, error as cred_error
from twisted.cred.portal import IRealm
from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import Interface, implementer

from twisted_netapps.addresses import format_peer, host_of, is_loopback
from twisted_netapps.logins import LoginRefused
from twisted_netapps.mail.plaintext import LOOPBACK
from twisted_netapps.mail.session_deadlines import SessionDeadlines
from twisted_netapps.observe import NULL_RECENT

from twisted_netapps.mail.smtp.core import (
    Authenticate,
    Close,
    MessageReady,
    Reply,
    Send,
    ServerSession,
    SessionConfig,
    StartTLS,
)

log = Logger(namespace="netapps.smtp")


class ISMTPSubmitter(Interface):
    """The avatar of an authenticated SMTP client (its user name is all we need)."""


@implementer(IRealm)
class SubmitterRealm:
    def requestAvatar(self, avatar_id, mind, *interfaces):
        if ISMTPSubmitter not in interfaces:
            raise NotImplementedError("SMTP realm only provides ISMTPSubmitter")
        return ISMTPSubmitter, avatar_id, lambda: None


@implementer(interfaces.IHalfCloseableProtocol)
class SMTPServerProtocol(protocol.Protocol, TimeoutMixin):
    def __init__(self, factory: "SMTPFactory") -> None:
        self.factory = factory
        self.callLater = factory.reactor.callLater
        self.session: ServerSession | None = None
        self.peer = "?"
        self._lost = False
        self.deadlines = SessionDeadlines(
            factory.reactor, self._deadline_passed, command=factory.command_deadline, data=factory.data_deadline,
            login=factory.login_deadline if factory.config.auth_required else None,
        )

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = format_peer(peer)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        config = self.factory.config
        # (only the "loopback" plaintext policy asks; parsing the address is not free)
        loopback = config.plaintext_auth == LOOPBACK and is_loopback(peer)
        self.session = ServerSession(config, self.factory.check_recipient, getattr(peer, "host", ""), loopback=loopback)
        self.setTimeout(self.factory.command_timeout)
        self.deadlines.start_login()
        self._run(self.session.start())

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.incr("bytes_in", len(data))
        self._run(self.session.receive_data(data))

    # IHalfCloseableProtocol: `printf 'EHLO..\r\n...QUIT\r\n' | nc -N` gets every reply.
    def readConnectionLost(self) -> None:
        self._run(self.session.receive_eof())

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def _run(self, events: list) -> None:
        """Carry out the session's events in order; writes are coalesced."""
        if self._lost:
            return
        out: list[bytes] = []
        for event in events:
            if type(event) is Send:
                out.append(event.data)
                if event.data[:1] in (b"4", b"5"):  # every refusal (a 550 at RCPT too) is an error
                    self.factory.stats.incr("errors")
            elif isinstance(event, MessageReady):
                self._flush(out)
                self._deliver(event)
            elif isinstance(event, Authenticate):
                self._flush(out)
                self._authenticate(event)
            elif isinstance(event, StartTLS):
                self._flush(out)
                self.transport.startTLS(self.factory.tls_options)
                log.info("smtp: {peer}: TLS started", peer=self.peer)
                self._run(self.session.tls_started())
            elif isinstance(event, Close):
                self._flush(out)
                self.transport.loseConnection()
                self._lost = True
                return
        self._flush(out)
        session = self.session
        waiting, in_data = session.waiting, session.in_data
        if not waiting:
            self.setTimeout(self.factory.data_timeout if in_data else self.factory.command_timeout)
        partial = session.partial_line
        if partial or in_data or self.deadlines.running:  # else there is nothing to start or cancel
            self.deadlines.update(partial_line=partial, lines=session.lines, in_data=in_data, waiting=waiting)

    def _flush(self, out: list[bytes]) -> None:
        if out:
            data = b"".join(out)
            out.clear()
            self.factory.stats.incr("bytes_out", len(data))
            self.transport.write(data)

    def _wait(self) -> None:
        """The session waits on us (disk, password check): stop reading, so a
        pipelining client cannot pile up unbounded input meanwhile."""
        self.setTimeout(None)  # waiting on our side, not on the client
        self.transport.pauseProducing()

    def _resume(self, events_of) -> None:
        if self._lost:
            return
        self.transport.resumeProducing()
        self._run(events_of())

    def _deliver(self, event: MessageReady) -> None:
        self._wait()
        envelope = event.envelope
        self.factory.stats.incr("requests")
        d = self.factory.deliverer.accept(envelope, event.data)

        def done(reply: Reply) -> None:
            if reply.code < 400:  # a refused message is counted as an error when its reply is sent
                self.factory.stats.incr("messages")
            self.factory.recent.record(
                "delivery", id=envelope.message_id, peer=self.peer, sender=str(envelope.mail_from),
                recipients=", ".join(str(r) for r in envelope.recipients), size=len(event.data), code=reply.code,
                received=ReceivedChain(event.data),
            )
            log.info(
                "smtp: {peer}: message {id} from <{sender}> to {n} recipients, {size} bytes: {code}",
                peer=self.peer, id=envelope.message_id, sender=str(envelope.mail_from),
                n=len(envelope.recipients), size=len(event.data), code=reply.code,
            )
            self._resume(lambda: self.session.message_result(reply))

        d.addCallback(done)
        d.addErrback(lambda f: log.failure("smtp: {peer}: delivery reply failed", f, peer=self.peer))

    def _authenticate(self, event: Authenticate) -> None:
        self._wait()
        creds = credentials.UsernamePassword(event.username.encode("utf-8", "surrogateescape"),
                                             event.password.encode("utf-8", "surrogateescape"))
        d = self.factory.logins.login(
            self.factory.portal, creds, host_of(self.transport.getPeer()), event.username, ISMTPSubmitter,
            failure_delay=self.factory.auth_failure_delay,
        )

        def ok(result):
            _iface, user, _logout = result
            log.info("smtp: {peer}: AUTH {mech} as {user}", peer=self.peer, mech=event.mechanism, user=user)
            self.deadlines.logged_in()
            self._resume(lambda: self.session.auth_result(user))

        def bad(failure):
            if failure.check(LoginRefused):
                self.factory.stats.incr("auth_refused")
                self._resume(self.session.auth_refused)
                return
            failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
            self.factory.stats.incr("auth_failures")
            log.info("smtp: {peer}: AUTH {mech} failed for {user!r}", peer=self.peer, mech=event.mechanism,
                     user=event.username)
            # (the login guard has already slowed the answer down)
            self._resume(lambda: self.session.auth_result(None))

        d.addCallbacks(ok, bad)
        d.addErrback(lambda f: log.failure("smtp: {peer}: AUTH failed", f, peer=self.peer))

    def timeoutConnection(self) -> None:
        log.info("smtp: {peer}: timeout, closing", peer=self.peer)
        self.factory.stats.incr("timeouts")
        self._close_for_time(b"421 4.4.2 Timeout, closing connection\r\n")

    def _deadline_passed(self, which: str) -> None:
        self.deadlines.report(which, "smtp", self.peer, self.factory.stats)
        self._close_for_time(b"421 4.4.2 %s time limit exceeded, closing connection\r\n" % which.encode().title())

    def _close_for_time(self, reply: bytes) -> None:
        if self._lost:
            return
        self.transport.write(reply)
        self._lost = True
        self.setTimeout(None)
        self.deadlines.cancel()
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self._lost = True
        self.setTimeout(None)
        self.deadlines.cancel()
        if self.session is not None and self.session.messages > 1:
            log.info("smtp: {peer}: closed after {n} messages", peer=self.peer, n=self.session.messages)


class SMTPFactory(protocol.Factory):
    noisy = False

    def __init__(
        self,
        *,
        config: SessionConfig,
        check_recipient,
        deliverer,
        portal,
        tls_options,
        stats,
        reactor,
        command_timeout: float,
        data_timeout: float,
        command_deadline: float,
        data_deadline: float,
        login_deadline: float,
        auth_failure_delay: float,
        logins,
        recent=NULL_RECENT,
    ) -> None:
        self.logins = logins
        self.recent = recent
        self.config = config
        self.check_recipient = check_recipient
        self.deliverer = deliverer
        self.portal = portal
        self.tls_options = tls_options
        self.stats = stats
        self.reactor = reactor
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self.command_deadline = command_deadline
        self.data_deadline = data_deadline
        self.login_deadline = login_deadline
        self.auth_failure_delay = auth_failure_delay

    def buildProtocol(self, addr):
        return SMTPServerProtocol(self)


class ReceivedChain:
    """The ``Received:`` lines a message arrived with (newest first), parsed only if shown."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data[:32768]

    def to_json(self) -> list[str]:
        head = self.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        unfolded = head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").replace(b"\n ", b" ").replace(b"\n\t", b" ")
        return [line[9:].strip().decode("utf-8", "replace")[:300]
                for line in unfolded.splitlines() if line[:9].lower() == b"received:"][:20]


#: What a connection over the frame's limits is told (RFC 5321 3.8) before it is closed.
TOO_MANY_CONNECTIONS = b"421 4.3.2 Too many connections, try again later\r\n"
