"""Twisted adapter for the SMTP session: sockets, timeouts, TLS, logins, delivery.

Thin by design: :class:`~twisted_netapps.mail.smtp.core.ServerSession` decides
everything; this protocol moves bytes, runs the requests the session emits
(AUTH through ``twisted.cred``, STARTTLS, durable delivery) and feeds their
results back. Replies produced by one read are written with one
``write`` (pipelined replies coalesce), and TCP_NODELAY is on, so there are
no Nagle/delayed-ACK stalls.
"""

from __future__ import annotations

from twisted.cred import credentials, error as cred_error
from twisted.cred.portal import IRealm
from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import Interface, implementer

from twisted_netapps.addresses import format_peer, host_of
from twisted_netapps.logins import LoginRefused

from twisted_netapps.mail.smtp.core import (
    DATA,
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


class SMTPServerProtocol(protocol.Protocol, TimeoutMixin):
    def __init__(self, factory: "SMTPFactory") -> None:
        self.factory = factory
        self.callLater = factory.reactor.callLater
        self.session: ServerSession | None = None
        self.peer = "?"
        self._lost = False

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = format_peer(peer)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.session = ServerSession(self.factory.config, self.factory.check_recipient, getattr(peer, "host", ""))
        self.setTimeout(self.factory.command_timeout)
        self._run(self.session.start())

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.incr("bytes_in", len(data))
        self._run(self.session.receive_data(data))

    def _run(self, events: list) -> None:
        """Carry out the session's events in order; writes are coalesced."""
        if self._lost:
            return
        out: list[bytes] = []
        for event in events:
            if isinstance(event, Send):
                out.append(event.data)
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
        self.setTimeout(self.factory.data_timeout if self.session.state == DATA else self.factory.command_timeout)

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
            self.factory.stats.incr("messages" if reply.code < 400 else "errors")
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
        self.transport.write(b"421 4.4.2 Timeout, closing connection\r\n")
        self._lost = True
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self._lost = True
        self.setTimeout(None)
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
        auth_failure_delay: float,
        logins,
    ) -> None:
        self.logins = logins
        self.config = config
        self.check_recipient = check_recipient
        self.deliverer = deliverer
        self.portal = portal
        self.tls_options = tls_options
        self.stats = stats
        self.reactor = reactor
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self.auth_failure_delay = auth_failure_delay

    def buildProtocol(self, addr):
        return SMTPServerProtocol(self)


#: What a connection over the frame's limits is told (RFC 5321 3.8) before it is closed.
TOO_MANY_CONNECTIONS = b"421 4.3.2 Too many connections, try again later\r\n"
