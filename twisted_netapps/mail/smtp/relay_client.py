"""A small SMTP client for relaying one queued message to one host.

One transaction per connection: greeting, EHLO (HELO if refused), MAIL,
RCPT for each recipient, DATA with the message dot-stuffed, QUIT. Every
step has a timeout; replies are parsed with bounded line length and count.
The outcome is per recipient, as the queue needs it: delivered, temporary
(retry later) or permanent (bounce).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet import defer, endpoints, error, protocol
from twisted.logger import Logger

from twisted_netapps.mail.smtp.syntax import dot_stuff

log = Logger(namespace="netapps.smtp")

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100


class ProtocolProblem(Exception):
    """The server said something that is not SMTP."""


@dataclass
class ServerReply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


@dataclass
class RelayOutcome:
    """Per recipient: ``delivered``, ``temporary`` and ``permanent`` map address -> reply text."""

    host: str
    tls: bool = False
    delivered: list[str] = field(default_factory=list)
    temporary: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)


class _ReplyReader(protocol.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._lines: list[str] = []
        self._replies: list[ServerReply] = []
        self._waiting: defer.Deferred | None = None
        self._lost: Exception | None = None

    def dataReceived(self, data: bytes) -> None:
        # Parse the whole segment before waking the waiter: the coroutine runs
        # synchronously when woken, and must see everything that arrived with
        # the reply it gets (a STARTTLS 220 with more behind it is an attack).
        self._buffer += data
        while b"\n" in self._buffer and self._lost is None:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
        if len(self._buffer) > MAX_REPLY_LINE:
            self._fail(ProtocolProblem("reply line too long"))
        if self._replies:
            self._wake()

    def _line(self, line: str) -> None:
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            self._fail(ProtocolProblem(f"not an SMTP reply: {line[:80]!r}"))
            return
        self._lines.append(line[4:])
        if len(self._lines) > MAX_REPLY_LINES:
            self._fail(ProtocolProblem("reply has too many lines"))
            return
        if line[3:4] != "-":
            reply = ServerReply(int(line[:3]), "\n".join(self._lines))
            self._lines = []
            self._replies.append(reply)

    def _fail(self, problem: Exception) -> None:
        self._lost = problem
        self._buffer = b""
        self._wake()
        self.transport.abortConnection()

    def discard_unread(self) -> bool:
        """Drop every reply and byte received but not yet read; True if there were any.

        Called when the server has answered STARTTLS: whatever came with or
        after that 220 in the clear cannot be trusted (an injected reply
        would be taken for the answer to a command sent inside TLS).
        """
        unread = bool(self._buffer or self._lines or self._replies)
        self._buffer, self._lines, self._replies = b"", [], []
        return unread

    def _wake(self) -> None:
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            if self._replies:
                waiting.callback(self._replies.pop(0))
            else:
                waiting.errback(self._lost or error.ConnectionLost())

    def connectionLost(self, reason) -> None:
        if self._lost is None:
            self._lost = reason.value
        self._wake()

    def next_reply(self) -> defer.Deferred:
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self._lost is not None:
            return defer.fail(self._lost)
        self._waiting = defer.Deferred()
        return self._waiting


async def relay_message(
    reactor,
    address: str,
    port: int,
    *,
    helo: str,
    sender: str,
    recipients: list[str],
    message: bytes,
    timeout: float,
    host_name: str = "",
    tls_options=None,
    source_address: str = "",
) -> RelayOutcome:
    """Send *message* to *recipients* via *address*:*port*.

    With *tls_options* (Twisted client TLS options), STARTTLS is used when
    the server offers it (opportunistic, as for MX hosts: RFC 3207 section 4
    leaves authentication to local policy; a failed handshake fails this host).
    A *source_address* of the same family as *address* is bound as the
    connection's local address (Postfix's ``smtp_bind_address``).

    Raises ``ConnectError``/``TimeoutError``/:class:`ProtocolProblem` and
    ``ConnectionLost`` for failures of the whole attempt (the caller treats
    them as temporary and tries the next host); SMTP replies are in the outcome.
    """
    label = f"{host_name or address}[{address}]:{port}"
    outcome = RelayOutcome(label)
    endpoint_class = endpoints.TCP6ClientEndpoint if ":" in address else endpoints.TCP4ClientEndpoint
    client = _ReplyReader()
    factory = protocol.Factory.forProtocol(lambda: client)
    factory.noisy = False  # one log line per delivery is ours; no "Starting factory" pairs
    bind = (source_address, 0) if source_address and (":" in source_address) == (":" in address) else None
    connected = endpoint_class(reactor, address, port, timeout=int(max(1, timeout)), bindAddress=bind)
    await connected.connect(factory).addTimeout(timeout, reactor)

    async def command(line: str | None) -> ServerReply:
        if line is not None:
            client.transport.write(line.encode("utf-8") + b"\r\n")
        return await client.next_reply().addTimeout(timeout, reactor)

    try:
        reply = await command(None)
        if reply.code != 220:
            return _whole(outcome, recipients, f"greeting: {reply}", reply.temporary)
        reply = await command(f"EHLO {helo}")
        if reply.code != 250:
            reply = await command(f"HELO {helo}")
            if reply.code != 250:
                return _whole(outcome, recipients, f"HELO: {reply}", reply.temporary)
            extensions = set()
        else:
            extensions = {line.split(" ")[0].upper() for line in reply.text.split("\n")[1:]}
        if "STARTTLS" in extensions and tls_options is not None:
            reply = await command("STARTTLS")
            if reply.code == 220:
                if client.discard_unread():
                    # CVE-2011-0411's client-side twin: replies pipelined in
                    # the clear behind the 220 would answer our EHLO in TLS.
                    raise ProtocolProblem("data after the STARTTLS 220 reply, before TLS")
                client.transport.startTLS(tls_options)
                outcome.tls = True
                reply = await command(f"EHLO {helo}")
                if reply.code != 250:
                    return _whole(outcome, recipients, f"EHLO after STARTTLS: {reply}", reply.temporary)
                extensions = {line.split(" ")[0].upper() for line in reply.text.split("\n")[1:]}
        size = f" SIZE={len(message)}" if "SIZE" in extensions else ""
        body = " BODY=8BITMIME" if "8BITMIME" in extensions and any(b > 127 for b in message) else ""
        reply = await command(f"MAIL FROM:<{sender}>{size}{body}")
        if reply.code != 250:
            return _whole(outcome, recipients, f"MAIL FROM: {reply}", reply.temporary)
        accepted = []
        for rcpt in recipients:
            reply = await command(f"RCPT TO:<{rcpt}>")
            if reply.code in (250, 251):
                accepted.append(rcpt)
            elif reply.temporary:
                outcome.temporary[rcpt] = f"RCPT TO: {reply}"
            else:
                outcome.permanent[rcpt] = f"RCPT TO: {reply}"
        if not accepted:
            await _quit(client, reactor)
            return outcome
        reply = await command("DATA")
        if reply.code != 354:
            return _whole(outcome, accepted, f"DATA: {reply}", reply.temporary)
        client.transport.write(dot_stuff(message))
        reply = await command(None)
        if reply.code == 250:
            outcome.delivered += accepted
        else:
            _whole(outcome, accepted, f"end of DATA: {reply}", reply.temporary)
        await _quit(client, reactor)
        return outcome
    finally:
        client.transport.loseConnection()


def _whole(outcome: RelayOutcome, recipients: list[str], text: str, temporary: bool) -> RelayOutcome:
    target = outcome.temporary if temporary else outcome.permanent
    for rcpt in recipients:
        target[rcpt] = text
    return outcome


async def _quit(client: _ReplyReader, reactor) -> None:
    client.transport.write(b"QUIT\r\n")
    try:
        await client.next_reply().addTimeout(5, reactor)
    except (defer.TimeoutError, error.ConnectionDone, error.ConnectionLost, ProtocolProblem):
        pass  # the message is already delivered; a rude QUIT changes nothing
