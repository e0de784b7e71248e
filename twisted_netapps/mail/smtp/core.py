"""The SMTP server session as a sans-I/O state machine (RFC 5321 + ESMTP extensions).

It follows the core contract of :mod:`twisted_netapps.sansio`. Bytes go in
with :meth:`ServerSession.receive_data` (and :meth:`~ServerSession.receive_eof`);
out come events: :class:`Send` (bytes to write, in order), requests the
adapter answers later — :class:`Authenticate` (-> :meth:`~ServerSession.auth_result`
or :meth:`~ServerSession.auth_refused`), :class:`MessageReady`
(-> :meth:`~ServerSession.message_result`), :class:`StartTLS`
(-> :meth:`~ServerSession.tls_started`) — and :class:`Close`. While a request
is outstanding the session buffers input and processes nothing, so pipelined
commands are answered strictly in order (RFC 2920) and a 250 for DATA can
wait for the fsync. States are :class:`State`, moved along
:data:`TRANSITIONS`; commands are dispatched from :data:`COMMANDS`.

What it gets right that stock ``twisted.mail`` does not:

- DATA is only ever ended by ``CRLF . CRLF``; a line over the limit (1000
  octets with CRLF) or a message over SIZE poisons the message, but the rest
  of the DATA is still consumed as data and only then answered with a 5xx:
  nothing in a body can be read as a command.
- Bytes pipelined after STARTTLS are discarded (no plaintext injection into
  the TLS session, CVE-2011-0411 style).
- Bare LF: a line break for dot-unstuffing and line length, never an end
  of DATA (no SMTP smuggling with ``LF . LF``); stored mail is all CRLF.
- Every input is bounded: command lines, data lines, message size,
  recipients, errors per session.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass, field
from typing import Callable

from twisted_netapps.mail.plaintext import TLS, plaintext_allowed
from twisted_netapps.mail.smtp.envelope import Envelope, protocol_name
from twisted_netapps.mail.smtp.syntax import (
    Address,
    SyntaxProblem,
    format_reply,
    parse_params,
    parse_path,
    split_command,
)
from twisted_netapps.sansio import Close, LocalProtocolError, Send, StateMachine

__all__ = [  # Send and Close are the shared events of every core
    "Authenticate", "Close", "MessageReady", "Reply", "Send", "ServerSession", "SessionConfig", "SessionInfo",
    "StartTLS", "State",
]

# --- events -----------------------------------------------------------------


@dataclass(frozen=True)
class StartTLS:
    """Write what came before, then start TLS and call :meth:`ServerSession.tls_started`."""


@dataclass(frozen=True)
class Authenticate:
    mechanism: str
    username: str
    password: str


@dataclass(frozen=True)
class MessageReady:
    envelope: Envelope
    data: bytes  # unstuffed message, CRLF lines, without our trace headers


@dataclass(frozen=True)
class Reply:
    code: int
    status: str
    text: str

    def encode(self) -> bytes:
        return format_reply(self.code, self.status, self.text)


# --- configuration and policy ----------------------------------------------


@dataclass(frozen=True)
class SessionConfig:
    hostname: str = "localhost"
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    max_command_line: int = 2048  # RFC 5321 says 512; AUTH and ESMTP parameters need more
    max_data_line: int = 1000  # octets including CRLF (RFC 5321 4.5.3.1.6)
    max_errors: int = 20
    max_hops: int = 50  # Received: fields before a message is taken for a mail loop
    starttls_available: bool = False
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    plaintext_auth: str = TLS  # when AUTH may be offered without TLS: twisted_netapps.mail.plaintext
    auth_required: bool = False  # the submission port (RFC 6409)


@dataclass
class SessionInfo:
    """What the policy may look at when judging a sender or recipient."""

    client_ip: str
    loopback: bool = False  # the client is on this host (for the plaintext-auth rule)
    tls: bool = False
    auth_user: str | None = None
    helo: str = ""


RecipientCheck = Callable[[SessionInfo, Address, Address], "Reply | None"]

# --- the machine -------------------------------------------------------------


class State(enum.Enum):
    # Members are singletons: hash them by identity, in C (Enum's own __hash__
    # is a Python call, paid on every transition check of every command).
    __hash__ = object.__hash__

    COMMAND = "command"  # reading command lines
    DATA = "data"  # reading the message after 354
    AUTH_PLAIN = "auth-plain"  # 334 sent: the PLAIN response line comes next
    AUTH_LOGIN_USER = "auth-login-user"
    AUTH_LOGIN_PASSWORD = "auth-login-password"
    AUTHENTICATING = "authenticating"  # Authenticate out: -> auth_result / auth_refused
    DELIVERING = "delivering"  # MessageReady out: -> message_result
    STARTING_TLS = "starting-tls"  # StartTLS out: -> tls_started
    CLOSED = "closed"


_ = State
TRANSITIONS: dict[State, frozenset[State]] = {
    _.COMMAND: frozenset({
        _.DATA, _.AUTH_PLAIN, _.AUTH_LOGIN_USER, _.AUTH_LOGIN_PASSWORD, _.AUTHENTICATING, _.STARTING_TLS, _.CLOSED,
    }),
    _.DATA: frozenset({_.COMMAND, _.DELIVERING, _.CLOSED}),
    # A response line returns to COMMAND, which then moves on (to the next
    # prompt or to AUTHENTICATING) as the command itself would.
    _.AUTH_PLAIN: frozenset({_.COMMAND, _.CLOSED}),
    _.AUTH_LOGIN_USER: frozenset({_.COMMAND, _.CLOSED}),
    _.AUTH_LOGIN_PASSWORD: frozenset({_.COMMAND, _.CLOSED}),
    _.AUTHENTICATING: frozenset({_.COMMAND, _.CLOSED}),
    _.DELIVERING: frozenset({_.COMMAND, _.CLOSED}),
    _.STARTING_TLS: frozenset({_.COMMAND, _.CLOSED}),
    _.CLOSED: frozenset(),
}
del _
#: States in which the session waits for the adapter and reads no input.
WAITING = frozenset({State.AUTHENTICATING, State.DELIVERING, State.STARTING_TLS})
_AUTH_EXCHANGE = frozenset({State.AUTH_PLAIN, State.AUTH_LOGIN_USER, State.AUTH_LOGIN_PASSWORD})

OK = Reply(250, "2.0.0", "OK")
HELP_TEXT = [
    "twisted-netapps SMTP; commands:",
    "EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT STARTTLS AUTH",
    "See RFC 5321",
]
_TOO_LONG = "line"
_TOO_BIG = "size"


@dataclass
class _Transaction:
    mail_from: Address
    body: str = "7BIT"
    declared_size: int | None = None
    recipients: list[Address] = field(default_factory=list)


class ServerSession:
    """One SMTP server connection's protocol state."""

    def __init__(
        self, config: SessionConfig, check_recipient: RecipientCheck, client_ip: str, *, loopback: bool = False
    ) -> None:
        self.config = config
        self.check_recipient = check_recipient
        self.info = SessionInfo(client_ip, loopback=loopback)
        self._machine = StateMachine(State.COMMAND, TRANSITIONS)
        self.esmtp = False
        self.errors = 0
        self.messages = 0
        #: Command lines (and AUTH responses) taken from the input so far: the
        #: adapter restarts its per-command deadline when this moves.
        self.lines = 0
        self._greeted = False
        self._eof = False
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line we are skipping
        self._transaction: _Transaction | None = None
        self._auth_user_pending = ""
        self._data_parts: list[bytes] = []
        self._data_size = 0
        self._data_error: str | None = None
        self._offset = 0  # start of the unprocessed input in _buffer (command phase)

    # -- public API ----------------------------------------------------------

    @property
    def state(self) -> State:
        return self._machine.state

    def start(self) -> list:
        """The greeting: the first events of every connection."""
        return [Send(format_reply(220, None, f"{self.config.hostname} ESMTP twisted-netapps ready"))]

    def receive_data(self, data: bytes) -> list:
        if self._machine.state is State.CLOSED:
            return []
        self._buffer += data
        return self._process()

    def receive_eof(self) -> list:
        """The client half-closed: answer what it sent, then :class:`Close`
        (an unfinished DATA is not a message)."""
        self._eof = True
        return self._process()

    def auth_result(self, user: str | None) -> list:
        self._expect(State.AUTHENTICATING)
        self._move(State.COMMAND)
        if user is None:
            events = [Send(Reply(535, "5.7.8", "Authentication credentials invalid").encode())]
            events += self._count_error()
        else:
            self.info.auth_user = user
            events = [Send(Reply(235, "2.7.0", "Authentication successful").encode())]
        return events + self._process()

    def auth_refused(self) -> list:
        """The login guard refused this client (too many failed logins from its address)."""
        self._expect(State.AUTHENTICATING)
        self._move(State.COMMAND)
        events = [Send(Reply(454, "4.7.0", "Too many failed logins from your address, try again later").encode())]
        return events + self._count_error() + self._process()

    def message_result(self, reply: Reply) -> list:
        """The delivery outcome of the last :class:`MessageReady` (250 only once durable)."""
        self._expect(State.DELIVERING)
        self._move(State.COMMAND)
        if reply.code < 400:
            self.messages += 1
        return [Send(reply.encode())] + self._process()

    def tls_started(self) -> list:
        self._expect(State.STARTING_TLS)
        self._move(State.COMMAND)
        self.info.tls = True
        return self._process()

    @property
    def in_data(self) -> bool:
        return self._machine.state is State.DATA

    @property
    def waiting(self) -> bool:
        """A request is out: the session reads nothing until the adapter answers it."""
        state = self._machine.state  # (identity tests: an Enum's hash is a Python call)
        return state is State.DELIVERING or state is State.AUTHENTICATING or state is State.STARTING_TLS

    @property
    def partial_line(self) -> bool:
        """Bytes of an unfinished command line (or AUTH response) are buffered."""
        state = self._machine.state
        return (state is State.COMMAND or state in _AUTH_EXCHANGE) and (
            len(self._buffer) > self._offset or self._discarding
        )

    # -- input loop ------------------------------------------------------------

    def _expect(self, state: State) -> None:
        if self._machine.state is not state:
            raise LocalProtocolError(f"answer for {state.name} while {self._machine.state.name}")

    def _move(self, state: State) -> None:
        self._machine.move(state)

    def _process(self) -> list:
        events: list = []
        machine = self._machine
        while machine.state is State.COMMAND or machine.state is State.DATA or machine.state in _AUTH_EXCHANGE:
            if machine.state is State.DATA:
                self._compact()
                more = self._data_phase(events)
            else:
                more = self._line_phase(events)
            if not more:
                break
        self._compact()
        if self._eof and not (machine.state is State.CLOSED or self.waiting):
            self._move(State.CLOSED)
            self._clear_input()
            events.append(Close())
        return events

    def _compact(self) -> None:
        # Commands are consumed by moving an offset, not by deleting each line
        # (which would be quadratic in a large pipelined burst).
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0

    def _clear_input(self) -> None:
        del self._buffer[:]
        self._offset = 0

    def _line_phase(self, events: list) -> bool:
        buf = self._buffer
        start = self._offset
        newline = buf.find(b"\n", start)
        limit = self.config.max_command_line
        if self._discarding:
            if newline < 0:
                self._clear_input()
                return False
            self._offset = newline + 1
            self._discarding = False
            return True
        if newline < 0:
            if len(buf) - start > limit:
                self._clear_input()
                self._discarding = True
                events.append(Send(Reply(500, "5.5.2", "Line too long").encode()))
                events.extend(self._count_error())
            return False
        raw = bytes(buf[start:newline])
        self._offset = newline + 1
        self.lines += 1
        if len(raw) + 1 > limit:
            events.append(Send(Reply(500, "5.5.2", "Line too long").encode()))
            events.extend(self._count_error())
            return True
        line = raw[:-1] if raw.endswith(b"\r") else raw
        text = line.decode("latin-1")
        if self._machine.state is State.COMMAND:
            events.extend(self._command(text))
        else:
            events.extend(self._auth_continuation(text))
        return True

    def _count_error(self) -> list:
        self.errors += 1
        if self.errors >= self.config.max_errors:
            return self._close(Reply(421, "4.7.0", f"{self.config.hostname} Too many errors, closing"))
        return []

    def _close(self, reply: Reply) -> list:
        self._move(State.CLOSED)
        self._clear_input()
        return [Send(reply.encode()), Close()]

    def _error(self, code: int, status: str, text: str) -> list:
        return [Send(Reply(code, status, text).encode())] + self._count_error()

    # -- commands --------------------------------------------------------------

    def _command(self, text: str) -> list:
        verb, argument = split_command(text)
        handler = COMMANDS.get((State.COMMAND, verb.upper())) if verb.isalpha() else None
        if handler is None:
            return self._error(500, "5.5.2", "Command unrecognized")
        try:
            return handler(self, argument)
        except SyntaxProblem as e:
            return self._error(e.code, e.status, e.text)

    def _reply(self, code: int, status: str, text: str) -> list:
        return [Send(Reply(code, status, text).encode())]

    def _cmd_helo(self, argument: str) -> list:
        if not argument:
            return self._error(501, "5.5.4", "Syntax: HELO hostname")
        if not _printable(argument):
            return self._error(501, "5.5.4", "Invalid domain name in HELO")
        self._greet(argument, esmtp=False)
        return [Send(format_reply(250, None, f"{self.config.hostname} Hello {argument}"))]

    def _cmd_ehlo(self, argument: str) -> list:
        if not argument:
            return self._error(501, "5.5.4", "Syntax: EHLO hostname")
        if not _printable(argument):
            # A domain or address literal is printable ASCII (no SMTPUTF8 here);
            # echoing 8-bit or control bytes back in the 250 would mangle them.
            return self._error(501, "5.5.4", "Invalid domain name in EHLO")
        self._greet(argument, esmtp=True)
        lines = [
            f"{self.config.hostname} Hello {argument}",
            "PIPELINING",
            f"SIZE {self.config.max_message_size}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
        ]
        if self.config.starttls_available and not self.info.tls:
            lines.append("STARTTLS")
        if self._auth_offered():
            lines.append("AUTH " + " ".join(self.config.auth_mechanisms))
        lines.append("HELP")
        return [Send(format_reply(250, None, lines))]

    def _greet(self, helo: str, esmtp: bool) -> None:
        self._greeted = True
        self.esmtp = esmtp
        self.info.helo = helo[:255]
        self._transaction = None

    def _plaintext_allowed(self) -> bool:
        return plaintext_allowed(self.config.plaintext_auth, tls=self.info.tls, loopback=self.info.loopback)

    def _auth_offered(self) -> bool:
        if not self.config.auth_mechanisms or self.info.auth_user is not None:
            return False
        return self._plaintext_allowed()

    def _cmd_mail(self, argument: str) -> list:
        if not self._greeted:
            return self._error(503, "5.5.1", "Send HELO/EHLO first")
        if self._transaction is not None:
            return self._error(503, "5.5.1", "Nested MAIL command")
        if self.config.auth_required and self.info.auth_user is None:
            return self._error(530, "5.7.0", "Authentication required")
        address, param_text = parse_path(argument, "FROM", allow_null=True)
        params = parse_params(param_text) if self.esmtp else ({} if not param_text else None)
        if params is None:
            return self._error(555, "5.5.4", "Parameters need EHLO")
        transaction = _Transaction(address)
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    return self._error(501, "5.5.4", "Bad SIZE value")
                if int(value) > self.config.max_message_size:
                    return self._error(552, "5.3.4", f"Message size exceeds fixed limit of {self.config.max_message_size}")
                transaction.declared_size = int(value)
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    return self._error(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
                transaction.body = value.upper()
            elif key == "AUTH":
                continue  # RFC 4954 5: accepted, not trusted
            else:
                return self._error(555, "5.5.4", f"Unsupported parameter {key}")
        self._transaction = transaction
        return self._reply(250, "2.1.0", f"Sender {address.bracketed()} OK")

    def _cmd_rcpt(self, argument: str) -> list:
        if self._transaction is None:
            return self._error(503, "5.5.1", "Need MAIL before RCPT")
        address, param_text = parse_path(argument, "TO", allow_null=False)
        params = parse_params(param_text)
        if params:
            return self._error(555, "5.5.4", f"Unsupported parameter {next(iter(params))}")
        if len(self._transaction.recipients) >= self.config.max_recipients:
            return self._reply(452, "4.5.3", "Too many recipients")
        refusal = self.check_recipient(self.info, self._transaction.mail_from, address)
        if refusal is not None:
            return [Send(refusal.encode())] + (self._count_error() if refusal.code >= 500 else [])
        self._transaction.recipients.append(address)
        return self._reply(250, "2.1.5", f"Recipient {address.bracketed()} OK")

    def _cmd_data(self, argument: str) -> list:
        if argument:
            return self._error(501, "5.5.4", "DATA takes no argument")
        if self._transaction is None:
            return self._error(503, "5.5.1", "Need MAIL before DATA")
        if not self._transaction.recipients:
            return self._error(554, "5.5.1", "No valid recipients")
        self._move(State.DATA)
        self._data_parts = []
        self._data_size = 0
        self._data_error = None
        return [Send(format_reply(354, None, "Start mail input; end with <CRLF>.<CRLF>"))]

    def _cmd_rset(self, argument: str) -> list:
        self._transaction = None
        return [Send(OK.encode())]

    def _cmd_noop(self, argument: str) -> list:
        return [Send(OK.encode())]

    def _cmd_vrfy(self, argument: str) -> list:
        if not argument:
            return self._error(501, "5.5.4", "Syntax: VRFY address")
        # RFC 5321 3.5.3: 252 is the answer that discloses no account names.
        return self._reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")

    def _cmd_expn(self, argument: str) -> list:
        return self._error(502, "5.5.1", "EXPN not available")

    def _cmd_help(self, argument: str) -> list:
        return [Send(format_reply(214, "2.0.0", HELP_TEXT))]

    def _cmd_quit(self, argument: str) -> list:
        return self._close(Reply(221, "2.0.0", f"{self.config.hostname} closing connection"))

    def _cmd_starttls(self, argument: str) -> list:
        if argument:
            return self._error(501, "5.5.4", "STARTTLS takes no argument")
        if not self.config.starttls_available:
            return self._error(502, "5.5.1", "STARTTLS not available")
        if self.info.tls:
            return self._error(503, "5.5.1", "TLS already active")
        # Anything pipelined after STARTTLS was sent in clear text: drop it.
        self._clear_input()
        self._move(State.STARTING_TLS)
        self._greeted = False
        self._transaction = None
        self.esmtp = False
        return [Send(Reply(220, "2.0.0", "Ready to start TLS").encode()), StartTLS()]

    def _cmd_auth(self, argument: str) -> list:
        if not self._greeted or not self.esmtp:
            return self._error(503, "5.5.1", "Send EHLO first")
        if self.info.auth_user is not None:
            return self._error(503, "5.5.1", "Already authenticated")
        if self._transaction is not None:
            return self._error(503, "5.5.1", "AUTH not allowed during a mail transaction")
        if not self._plaintext_allowed():
            return self._error(538, "5.7.11", "Encryption required for requested authentication mechanism")
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in self.config.auth_mechanisms:
            return self._error(504, "5.5.4", "Unrecognized authentication type")
        initial = initial.strip()
        if mechanism == "PLAIN":
            if initial:
                return self._plain_response(initial)
            self._move(State.AUTH_PLAIN)
            return [Send(b"334 \r\n")]
        # LOGIN
        if initial:
            return self._login_user(initial)
        self._move(State.AUTH_LOGIN_USER)
        return [Send(b"334 VXNlcm5hbWU6\r\n")]

    # -- AUTH exchanges ---------------------------------------------------------

    def _auth_continuation(self, text: str) -> list:
        state = self._machine.state
        self._move(State.COMMAND)
        if text.strip() == "*":
            return self._error(501, "5.0.0", "Authentication cancelled")
        if state is State.AUTH_PLAIN:
            return self._plain_response(text)
        if state is State.AUTH_LOGIN_USER:
            return self._login_user(text)
        return self._login_password(text)

    @staticmethod
    def _b64(text: str) -> bytes | None:
        try:
            return base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None

    def _plain_response(self, text: str) -> list:
        decoded = self._b64(text) if text != "=" else b""
        parts = decoded.split(b"\0") if decoded is not None else []
        if len(parts) != 3:
            return self._error(501, "5.5.2", "Malformed AUTH PLAIN response")
        authzid, user, password = (p.decode("utf-8", "surrogateescape") for p in parts)
        if authzid and authzid != user:
            return self._error(535, "5.7.8", "Authorization identity must match")
        return self._authenticate("PLAIN", user, password)

    def _login_user(self, text: str) -> list:
        decoded = self._b64(text)
        if decoded is None:
            return self._error(501, "5.5.2", "Malformed AUTH LOGIN response")
        self._auth_user_pending = decoded.decode("utf-8", "surrogateescape")
        self._move(State.AUTH_LOGIN_PASSWORD)
        return [Send(b"334 UGFzc3dvcmQ6\r\n")]

    def _login_password(self, text: str) -> list:
        decoded = self._b64(text)
        if decoded is None:
            return self._error(501, "5.5.2", "Malformed AUTH LOGIN response")
        return self._authenticate("LOGIN", self._auth_user_pending, decoded.decode("utf-8", "surrogateescape"))

    def _authenticate(self, mechanism: str, user: str, password: str) -> list:
        self._move(State.AUTHENTICATING)
        return [Authenticate(mechanism, user, password)]

    # -- DATA --------------------------------------------------------------------

    def _data_phase(self, events: list) -> bool:
        buf = self._buffer
        if self._discarding:  # the rest of an over-long line: skip to its CRLF
            end = buf.find(b"\r\n")
            if end < 0:
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
                return False
            del buf[: end + 2]
            self._discarding = False
        if buf.startswith(b".\r\n"):
            end = 0
        else:
            found = buf.find(b"\r\n.\r\n")
            end = found + 2 if found >= 0 else -1
        if end >= 0:
            self._absorb(bytes(buf[:end]))
            del buf[: end + 3]
            events.extend(self._end_of_data())
            return True
        last = buf.rfind(b"\r\n")
        if last >= 0:
            self._absorb(bytes(buf[: last + 2]))
            del buf[: last + 2]
        if len(buf) >= self.config.max_data_line:  # an incomplete line already too long
            self._poison(_TOO_LONG)
            keep = 1 if buf.endswith(b"\r") else 0
            del buf[: len(buf) - keep]
            self._discarding = True
        return False

    def _poison(self, why: str) -> None:
        if self._data_error is None:
            self._data_error = why
        self._data_parts = []

    def _absorb(self, block: bytes) -> None:
        """Take complete lines (each ending CRLF, starting at a line start)."""
        if not block or self._data_error is not None:
            return  # a poisoned message is consumed, not kept
        # Lines for length and dot-unstuffing end at LF (a bare LF too: clients
        # that send them also stuff after them); only CRLF.CRLF ends DATA.
        if max(map(len, block.split(b"\n"))) + 1 > self.config.max_data_line:
            self._poison(_TOO_LONG)
            return
        if block.startswith(b"."):
            block = block[1:]
        if b"\n." in block:
            block = block.replace(b"\n..", b"\n.")
        self._data_size += len(block)
        if self._data_size > self.config.max_message_size:
            self._poison(_TOO_BIG)
            return
        self._data_parts.append(block)

    def _end_of_data(self) -> list:
        transaction, self._transaction = self._transaction, None
        error, self._data_error = self._data_error, None
        parts, self._data_parts = self._data_parts, []
        if error == _TOO_LONG:
            return self._rejected(554, "5.6.0", f"Message rejected: a line is longer than {self.config.max_data_line} octets")
        if error == _TOO_BIG:
            return self._rejected(552, "5.3.4", f"Message size exceeds fixed limit of {self.config.max_message_size}")
        assert transaction is not None
        data = b"".join(parts)
        if count_received(data) > self.config.max_hops:
            # RFC 5321 6.3: a message that has passed this many relays is looping
            return self._rejected(554, "5.4.6", f"Too many hops (over {self.config.max_hops} Received: headers)")
        envelope = Envelope(
            mail_from=transaction.mail_from,
            recipients=list(transaction.recipients),
            helo=self.info.helo,
            client_ip=self.info.client_ip,
            protocol=protocol_name(self.esmtp, self.info.tls, self.info.auth_user is not None),
            auth_user=self.info.auth_user,
            body=transaction.body,
            declared_size=transaction.declared_size,
        )
        self._move(State.DELIVERING)
        return [MessageReady(envelope, data)]

    def _rejected(self, code: int, status: str, text: str) -> list:
        """The message just read is refused: back to commands, with the error."""
        self._move(State.COMMAND)
        return self._error(code, status, text)


#: What each command does in each state: (state, VERB) -> handler. Commands
#: exist only in COMMAND; the AUTH exchange and DATA read raw lines.
COMMANDS: dict[tuple[State, str], Callable[[ServerSession, str], list]] = {
    (State.COMMAND, verb): handler
    for verb, handler in (
        ("HELO", ServerSession._cmd_helo),
        ("EHLO", ServerSession._cmd_ehlo),
        ("MAIL", ServerSession._cmd_mail),
        ("RCPT", ServerSession._cmd_rcpt),
        ("DATA", ServerSession._cmd_data),
        ("RSET", ServerSession._cmd_rset),
        ("NOOP", ServerSession._cmd_noop),
        ("VRFY", ServerSession._cmd_vrfy),
        ("EXPN", ServerSession._cmd_expn),
        ("HELP", ServerSession._cmd_help),
        ("QUIT", ServerSession._cmd_quit),
        ("STARTTLS", ServerSession._cmd_starttls),
        ("AUTH", ServerSession._cmd_auth),
    )
}


def count_received(message: bytes) -> int:
    """How many ``Received:`` fields the header section of *message* has."""
    end = message.find(b"\r\n\r\n")
    header = message[: end + 2] if end >= 0 else message
    return (b"\n" + header.lower()).count(b"\nreceived:")


def _printable(text: str) -> bool:
    return all(0x20 <= ord(c) <= 0x7E for c in text)
