"""The relay client against scripted SMTP servers on loopback: STARTTLS reply injection
(the client-side twin of CVE-2011-0411), and the honest STARTTLS path."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import protocol, ssl

from twisted_netapps.mail.smtp.relay_client import ProtocolProblem, relay_message
from twisted_netapps.tls import server_tls_options

MESSAGE = b"Subject: relayed\r\n\r\nbody\r\n"


class ScriptedServer(protocol.Protocol):
    """A line-at-a-time SMTP server; what it answers to STARTTLS is the test's choice."""

    def __init__(self, starttls_reply: bytes, tls_options=None) -> None:
        self.starttls_reply = starttls_reply
        self.tls_options = tls_options
        self.commands: list[bytes] = []
        self.buffer = b""
        self.in_data = False
        self.message = b""
        self.tls = False

    def connectionMade(self) -> None:
        self.transport.write(b"220 scripted.test ESMTP\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.line(line)

    def line(self, line: bytes) -> None:
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.transport.write(b"250 2.0.0 accepted\r\n")
            else:
                self.message += line + b"\r\n"
            return
        self.commands.append(line)
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"EHLO":
            starttls = b"" if self.tls else b"250-STARTTLS\r\n"
            self.transport.write(b"250-scripted.test\r\n" + starttls + b"250 8BITMIME\r\n")
        elif verb == b"STARTTLS":
            self.transport.write(self.starttls_reply)  # one segment: the 220 and whatever follows
            if self.tls_options is not None:
                self.transport.startTLS(self.tls_options)
                self.tls = True
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go ahead\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"250 2.0.0 OK\r\n")


def listen(server: ScriptedServer):
    from twisted.internet import reactor

    return reactor.listenTCP(0, protocol.Factory.forProtocol(lambda: server), interface="127.0.0.1")


async def relay(port, **kwargs):
    from twisted.internet import reactor

    return await relay_message(
        reactor, "127.0.0.1", port.getHost().port, helo="client.test", sender="a@example.test",
        recipients=["b@remote.test"], message=MESSAGE, timeout=5, tls_options=ssl.CertificateOptions(), **kwargs,
    )


@pytest_twisted.ensureDeferred
async def test_reply_injected_behind_the_starttls_220_is_a_protocol_error():
    server = ScriptedServer(b"220 ready\r\n250 injected\r\n")
    port = listen(server)
    try:
        with pytest.raises(ProtocolProblem, match="after the STARTTLS 220"):
            await relay(port)
    finally:
        await port.stopListening()
    # The injected 250 was never taken for anything: no EHLO inside TLS, no MAIL, no message.
    assert [c.split(b" ")[0] for c in server.commands] == [b"EHLO", b"STARTTLS"]
    assert server.message == b""


@pytest_twisted.ensureDeferred
async def test_bytes_of_a_partial_line_behind_the_220_are_refused_too():
    server = ScriptedServer(b"220 ready\r\n250-inj")
    port = listen(server)
    try:
        with pytest.raises(ProtocolProblem):
            await relay(port)
    finally:
        await port.stopListening()
    assert server.message == b""


@pytest_twisted.ensureDeferred
async def test_honest_starttls_delivers_inside_tls(tmp_path):
    server = ScriptedServer(b"220 2.0.0 Ready to start TLS\r\n", server_tls_options(tmp_path, "", "", "test"))
    port = listen(server)
    try:
        outcome = await relay(port)
    finally:
        await port.stopListening()
    assert outcome.tls and outcome.delivered == ["b@remote.test"]
    assert [c.split(b" ")[0] for c in server.commands] == [b"EHLO", b"STARTTLS", b"EHLO", b"MAIL", b"RCPT",
                                                             b"DATA", b"QUIT"]
    assert server.message == MESSAGE
