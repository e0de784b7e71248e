"""The IMAP4rev1 command layer, sans I/O: bytes in, events out.

:class:`ImapCore` frames what the client sends (lines, synchronising and
non-synchronising literals, RFC 7888 LITERAL+), each bounded; parses every
command into a typed request (:mod:`~twisted_netapps.mail.imap.commands`);
keeps the session state (RFC 3501 3: not authenticated -> authenticated ->
selected -> logout, the allowed transitions in :data:`TRANSITIONS`); and
answers by itself what needs no storage: CAPABILITY, ID (RFC 2971), ENABLE
(RFC 5161, UTF8=ACCEPT of RFC 6855), LOGOUT, STARTTLS, and the SASL exchange
of AUTHENTICATE PLAIN with SASL-IR (RFC 4959). Work for the adapter comes out
as :class:`~twisted_netapps.mail.imap.events.CheckPassword` and
:class:`~twisted_netapps.mail.imap.events.Run`; its results come back through
:meth:`ImapCore.login_done` and :meth:`ImapCore.command_done`.

Commands run strictly one at a time, in order: while one is out with the
adapter, nothing after it is read (``a LOGIN`` + ``b SELECT`` pipelined runs
the SELECT after the login, with its outcome). After STARTTLS, whatever the
client sent in the clear behind it is discarded (the CVE-2011-0411
injection). Malformed input of any kind (8-bit command names, NUL, unbalanced
parentheses, bad literals) is a tagged ``BAD`` (an untagged one when there is
no valid tag), never an exception; a line longer than ``max_line`` is
``* BYE`` and the end of the connection. The time never matters here: the
adapter keeps the timeouts.
"""

from __future__ import annotations

import re

from twisted_netapps.mail.imap import commands as cmd
from twisted_netapps.mail.imap.events import (
    CheckPassword,
    Close,
    IdleDone,
    Result,
    Run,
    Send,
    StartTls,
    State,
    StateMachine,
)
from twisted_netapps.mail.imap.syntax import LiteralValue, ParseError, Reader, is_tag, string

TRANSITIONS = {
    State.NOT_AUTHENTICATED: {State.AUTHENTICATED, State.LOGOUT},
    State.AUTHENTICATED: {State.SELECTED, State.LOGOUT},
    State.SELECTED: {State.AUTHENTICATED, State.SELECTED, State.LOGOUT},
    State.LOGOUT: set(),
}

_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_UNAUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})
ALLOWED_IN = {
    b"CAPABILITY": _ANY, b"NOOP": _ANY, b"LOGOUT": _ANY, b"ID": _ANY,
    b"STARTTLS": _UNAUTH, b"LOGIN": _UNAUTH, b"AUTHENTICATE": _UNAUTH,
    b"ENABLE": frozenset({State.AUTHENTICATED}),
    b"NAMESPACE": _AUTH, b"SELECT": _AUTH, b"EXAMINE": _AUTH, b"CREATE": _AUTH, b"DELETE": _AUTH,
    b"RENAME": _AUTH, b"SUBSCRIBE": _AUTH, b"UNSUBSCRIBE": _AUTH, b"LIST": _AUTH, b"LSUB": _AUTH,
    b"STATUS": _AUTH, b"APPEND": _AUTH, b"IDLE": _AUTH,
    b"CHECK": _SELECTED, b"CLOSE": _SELECTED, b"UNSELECT": _SELECTED, b"EXPUNGE": _SELECTED,
    b"SEARCH": _SELECTED, b"FETCH": _SELECTED, b"STORE": _SELECTED, b"COPY": _SELECTED,
    b"MOVE": _SELECTED, b"UID": _SELECTED,
}
assert set(ALLOWED_IN) == set(cmd.PARSERS)

BASE_CAPABILITIES = (
    b"IMAP4rev1", b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE", b"NAMESPACE", b"UIDPLUS",
    b"MOVE", b"UNSELECT", b"CHILDREN", b"SPECIAL-USE", b"UTF8=ACCEPT",
)
SERVER_ID = (b"name", b"twisted-netapps")
_LITERAL_RE = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}$")


class _Command:
    """A command being framed: its text so far and its literals."""

    def __init__(self) -> None:
        self.text = bytearray()
        self.literals: dict[int, LiteralValue] = {}
        self.size = 0
        self.tag = b"*"
        self.name = b""
        self.pending: tuple[int, int, bool] | None = None  # (marker offset, size, binary) of the literal being read


class ImapCore:
    """One IMAP connection's protocol state. See the module docstring."""

    def __init__(
        self,
        *,
        max_line: int = 65536,
        max_append: int = 50 * 1024 * 1024,
        plaintext_without_tls: bool = True,
        tls_available: bool = False,
        greeting: bytes = b"twisted-netapps IMAP4rev1 ready",
        version: bytes = b"",
    ) -> None:
        self.max_line = max_line
        self.max_append = max_append
        self.tls_available = tls_available
        self.tls_active = False
        # LOGIN/AUTHENTICATE PLAIN allowed without TLS here (the adapter's
        # policy: "always", or "loopback" for a loopback peer); always after STARTTLS.
        self._plaintext_without_tls = plaintext_without_tls
        self.machine = StateMachine(State.NOT_AUTHENTICATED, TRANSITIONS)
        self.utf8 = False
        self.commands = 0  # counted for the adapter's stats
        self.errors = 0
        self._greeting = greeting
        self._version = version
        self._buffer = bytearray()
        self._command: _Command | None = None
        self._waiting: tuple[bytes, object] | None = None  # (tag, request) out with the adapter
        self._sasl_tag: bytes | None = None
        self._idle_open = False  # IDLE is running and its DONE has not come yet
        self._idle_bad = False
        self._eof = False
        self._closed = False

    # ------------------------------------------------------------ public API

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def idling(self) -> bool:
        """In IDLE: changes may be pushed to the client now."""
        return self._idle_open

    @property
    def busy(self) -> bool:
        """A command is out with the adapter (input is held until it is done)."""
        return self._waiting is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def greeting(self) -> list:
        return [Send(b"* OK [CAPABILITY " + b" ".join(self.capabilities()) + b"] " + self._greeting + b"\r\n")]

    def capabilities(self) -> list[bytes]:
        caps = list(BASE_CAPABILITIES)
        if self.state is State.NOT_AUTHENTICATED:
            if self.tls_available and not self.tls_active:
                caps.append(b"STARTTLS")
            caps.append(b"AUTH=PLAIN" if self._plaintext_ok() else b"LOGINDISABLED")
        return caps

    def receive_data(self, data: bytes) -> list:
        if self._closed:
            return []
        self._buffer += data
        return self._process()

    def receive_eof(self) -> list:
        """The client sent FIN: answer what it sent, then close."""
        self._eof = True
        if self._idle_open:
            self._idle_open = False
            return [IdleDone()]
        return self._process()

    def tls_started(self) -> list:
        self.tls_active = True
        return []

    def login_done(self, ok: bool, code: bytes | None = None, text: str = "") -> list:
        tag, _request = self._take_waiting()
        events = []
        if ok:
            self.machine.move(State.AUTHENTICATED)
            caps = b"CAPABILITY " + b" ".join(self.capabilities())
            events.append(self._tagged(tag, "OK", text or "LOGIN completed", caps))
        else:
            events.append(self._tagged(tag, "NO", text or "LOGIN failed", code or b"AUTHENTICATIONFAILED"))
        return events + self._process()

    def command_done(self, result: Result) -> list:
        tag, request = self._take_waiting()
        if isinstance(request, cmd.Idle) and self._idle_bad:
            result = Result("BAD", "expected DONE")
        if isinstance(request, cmd.Select):
            self.machine.move(State.SELECTED if result.status == "OK" else State.AUTHENTICATED)
        elif isinstance(request, (cmd.Close, cmd.Unselect)) and result.status == "OK":
            self.machine.move(State.AUTHENTICATED)
        return [self._tagged(tag, result.status, result.text, result.code)] + self._process()

    # ------------------------------------------------------------ framing

    def _take_waiting(self):
        if self._waiting is None:
            raise RuntimeError("no command is waiting for a result")
        waiting, self._waiting = self._waiting, None
        return waiting

    def _process(self) -> list:
        events: list = []
        while not self._closed and (self._waiting is None or self._idle_open):
            command = self._command
            if command is not None and command.pending is not None:
                offset, size, binary = command.pending
                if len(self._buffer) < size:
                    break
                data = bytes(self._buffer[:size])
                del self._buffer[:size]
                command.literals[offset] = LiteralValue(data, len(command.text), binary)
                command.pending = None
                continue
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    events += self._fatal(b"line too long")
                break
            if end > self.max_line:
                events += self._fatal(b"line too long")
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            events += self._line(line)
        if self._eof and not self._closed and self._waiting is None:
            self._closed = True  # anything half-sent (a line, a SASL exchange) can never complete
            events.append(Close())
        return events

    def _fatal(self, text: bytes) -> list:
        self._closed = True
        self.errors += 1
        return [Send(b"* BYE " + text + b"\r\n"), Close()]

    def _line(self, line: bytes) -> list:
        if self._idle_open:
            self._idle_open = False
            self._idle_bad = line.strip().upper() != b"DONE"
            return [IdleDone()]
        if self._sasl_tag is not None:
            tag, self._sasl_tag = self._sasl_tag, None
            return self._sasl_response(tag, line)
        command = self._command
        if command is None:
            command = self._command = _Command()
        command.text += line
        command.size += len(line)
        marker = _LITERAL_RE.search(line)
        if marker is None:
            self._command = None
            return self._dispatch(command)
        return self._literal_announced(command, marker)

    def _literal_announced(self, command: _Command, marker: re.Match) -> list:
        binary, size, non_sync = marker.group(1) == b"~", int(marker.group(2)), marker.group(3) == b"+"
        if not command.name:
            command.tag, command.name = _tag_and_name(bytes(command.text))
        limit = self.max_append if command.name == b"APPEND" else self.max_line
        problem = None
        if not is_tag(command.tag):
            problem = (b"*", "invalid tag", None)
        elif size > limit or command.size + size > limit + self.max_line:
            problem = (command.tag, f"literal larger than {limit} octets", b"TOOBIG")
        elif command.name not in ALLOWED_IN:
            problem = (command.tag, "unknown command", None)
        elif self.state not in ALLOWED_IN[command.name]:
            problem = (command.tag, _not_now(command.name, self.state), None)
        if problem is not None:
            self._command = None
            tag, text, code = problem
            events = [self._tagged(tag, "BAD", text, code)]
            if non_sync:
                # The octets are on their way and cannot be told apart from
                # commands: the only safe answer is to hang up.
                events += self._fatal(b"cannot skip a non-synchronizing literal")
            return events
        command.size += size
        offset = len(command.text) - (len(marker.group(0)))
        command.pending = (offset, size, binary)
        return [] if non_sync else [Send(b"+ Ready for literal data\r\n")]

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, command: _Command) -> list:
        text = bytes(command.text)
        self.commands += 1
        tag, name = _tag_and_name(text)
        if not is_tag(tag):
            return [self._tagged(b"*", "BAD", "invalid tag or command")]
        if not name:
            return [self._tagged(tag, "BAD", "missing command")]
        parser = cmd.PARSERS.get(name)
        if parser is None:
            return [self._tagged(tag, "BAD", "unknown command")]
        if self.state not in ALLOWED_IN[name]:
            return [self._tagged(tag, "BAD", _not_now(name, self.state))]
        reader = Reader(text, command.literals, len(tag) + 1 + len(name))
        try:
            request = parser(reader, self.utf8)
        except ParseError as e:
            return [self._tagged(tag, "BAD", f"{name.decode('ascii')}: {e}", e.code)]
        handler = _CORE_HANDLERS.get(type(request))
        if handler is not None:
            return handler(self, tag, request)
        if isinstance(request, cmd.Idle):
            self._waiting = (tag, request)
            self._idle_open, self._idle_bad = True, False
            return [Send(b"+ idling\r\n"), Run(request)]
        if isinstance(request, cmd.Noop) and self.state is State.NOT_AUTHENTICATED:
            return [self._tagged(tag, "OK", f"{request.name} completed")]
        self._waiting = (tag, request)
        return [Run(request)]

    def _tagged(self, tag: bytes, status: str, text: str, code: bytes | None = None) -> Send:
        if status != "OK":
            self.errors += 1
        code_part = b"[" + code + b"] " if code else b""
        return Send(tag + b" " + status.encode() + b" " + code_part + text.encode("ascii", "replace") + b"\r\n")

    def _plaintext_ok(self) -> bool:
        return self._plaintext_without_tls or self.tls_active

    # ------------------------------------------------------------ commands the core answers

    def _capability(self, tag: bytes, request) -> list:
        return [Send(b"* CAPABILITY " + b" ".join(self.capabilities()) + b"\r\n"),
                self._tagged(tag, "OK", "CAPABILITY completed")]

    def _logout(self, tag: bytes, request) -> list:
        self.machine.move(State.LOGOUT)
        self._closed = True
        return [Send(b"* BYE logging out\r\n"), self._tagged(tag, "OK", "LOGOUT completed"), Close()]

    def _id(self, tag: bytes, request: cmd.Id) -> list:
        fields = [SERVER_ID[0], SERVER_ID[1]]
        if self._version:
            fields += [b"version", self._version]
        return [Send(b"* ID (" + b" ".join(string(f) for f in fields) + b")\r\n"),
                self._tagged(tag, "OK", "ID completed")]

    def _enable(self, tag: bytes, request: cmd.Enable) -> list:
        enabled = []
        for name in request.capabilities:
            if name == "UTF8=ACCEPT" and not self.utf8:
                self.utf8 = True
                enabled.append(name.encode("ascii"))
        return [Send(b"* ENABLED" + b"".join(b" " + e for e in enabled) + b"\r\n"),
                self._tagged(tag, "OK", "ENABLE completed")]

    def _starttls(self, tag: bytes, request) -> list:
        if not self.tls_available or self.tls_active:
            return [self._tagged(tag, "BAD", "STARTTLS not available")]
        # Anything pipelined behind STARTTLS was sent in the clear: never run it inside TLS.
        self._buffer.clear()
        self._command = None
        return [self._tagged(tag, "OK", "begin TLS negotiation now"), StartTls()]

    def _login(self, tag: bytes, request: cmd.Login) -> list:
        if not self._plaintext_ok():
            return [self._tagged(tag, "NO", "LOGIN is disabled before STARTTLS", b"PRIVACYREQUIRED")]
        self._waiting = (tag, request)
        return [CheckPassword(request.user.decode("utf-8", "replace"), request.password)]

    def _authenticate(self, tag: bytes, request: cmd.Authenticate) -> list:
        if request.mechanism != "PLAIN":
            return [self._tagged(tag, "NO", "unsupported authentication mechanism", b"CANNOT")]
        if not self._plaintext_ok():
            return [self._tagged(tag, "NO", "AUTHENTICATE PLAIN is disabled before STARTTLS", b"PRIVACYREQUIRED")]
        if request.initial is None:
            self._sasl_tag = tag
            return [Send(b"+ \r\n")]
        return self._sasl_plain(tag, request.initial)

    def _sasl_response(self, tag: bytes, line: bytes) -> list:
        if line.strip() == b"*":
            return [self._tagged(tag, "BAD", "AUTHENTICATE cancelled")]
        try:
            response = cmd.decode_sasl(line)
        except ParseError:
            return [self._tagged(tag, "BAD", "AUTHENTICATE: response is not base64")]
        return self._sasl_plain(tag, response)

    def _sasl_plain(self, tag: bytes, response: bytes) -> list:
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            return [self._tagged(tag, "BAD", "AUTHENTICATE PLAIN: malformed response")]
        authzid, user, password = parts
        if authzid and authzid != user:
            return [self._tagged(tag, "NO", "cannot act as another user", b"AUTHORIZATIONFAILED")]
        self._waiting = (tag, cmd.Login(user, password))
        return [CheckPassword(user.decode("utf-8", "replace"), password)]


_CORE_HANDLERS = {
    cmd.Capability: ImapCore._capability,
    cmd.Logout: ImapCore._logout,
    cmd.Id: ImapCore._id,
    cmd.Enable: ImapCore._enable,
    cmd.StartTls: ImapCore._starttls,
    cmd.Login: ImapCore._login,
    cmd.Authenticate: ImapCore._authenticate,
}


def _tag_and_name(text: bytes) -> tuple[bytes, bytes]:
    tag, _, rest = text.partition(b" ")
    name = rest.split(b" ", 1)[0]
    if _LITERAL_RE.search(name):
        name = b""
    return tag, name.upper()


def _not_now(name: bytes, state: State) -> str:
    what = name.decode("ascii", "replace")
    if state is State.NOT_AUTHENTICATED:
        return f"{what}: log in first"
    if state is State.AUTHENTICATED and ALLOWED_IN.get(name) == _SELECTED:
        return f"{what}: select a mailbox first"
    return f"{what} is not allowed now"
