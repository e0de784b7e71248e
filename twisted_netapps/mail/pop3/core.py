"""POP3 protocol core (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 SASL PLAIN).

It follows the core contract of :mod:`twisted_netapps.sansio`: bytes in with
:meth:`Pop3Session.receive_data` (framed here by a bounded
:class:`~twisted_netapps.sansio.LineBuffer`) and :meth:`~Pop3Session.receive_eof`,
events out. The adapter (:mod:`twisted_netapps.mail.pop3.protocol`) carries
out the requests and answers each through its method:

=====================  ==============================================
request                answer
=====================  ==============================================
:class:`CheckPassword`  :meth:`~Pop3Session.login_accepted` /
:class:`CheckApop`      :meth:`~Pop3Session.login_rejected`
:class:`StartTls`       :meth:`~Pop3Session.tls_started`
:class:`SendMessage`    :meth:`~Pop3Session.message_sent`
:class:`Commit`         :meth:`~Pop3Session.update_done`
=====================  ==============================================

While a request is out the session buffers input and answers nothing, so
pipelined commands are answered strictly in order. States are
:class:`State`, moved along :data:`TRANSITIONS`; commands are dispatched from
:data:`COMMANDS`, keyed by (state, keyword). What this core guarantees, and
stock ``twisted.mail.pop3`` did not:

- the three phases exactly: ``USER``/``PASS``/``APOP``/``AUTH``/``STLS`` only in
  AUTHORIZATION, mail commands only in TRANSACTION; ``DELE`` only marks, and
  the marked messages are removed in the UPDATE phase after ``QUIT`` (a dropped
  connection never reaches it, so it deletes nothing);
- every error is an ``-ERR`` reply (with RFC 2449/3206 response codes) and the
  session goes on, until too many bad commands or failed logins;
- ``UIDL n`` and ``LIST n`` answer with the message number; ``LIST`` sizes are
  the exact CRLF octets ``RETR`` sends (dot-stuffing not counted);
- ``CAPA`` says ``PIPELINING`` and advertises ``USER``/``SASL``/``STLS``/APOP
  only when usable; bytes pipelined after ``STLS`` are discarded.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from twisted_netapps.mail.plaintext import ALWAYS, plaintext_allowed
from twisted_netapps.sansio import OVERLONG, Close, LineBuffer, LocalProtocolError, Send, StateMachine

MAX_ARG_BYTES = 255  # RFC 2449: arguments up to 40 octets; be generous, not unbounded
_DIGEST_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_NUMBER_RE = re.compile(r"^[0-9]{1,9}$")
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


# ----------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Log *user* in with *password* (USER/PASS or AUTH PLAIN)."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class CheckApop:
    """Log *user* in by APOP: *digest* = md5(timestamp + secret)."""

    user: str
    digest: str
    timestamp: str


@dataclass(frozen=True, slots=True)
class StartTls:
    """The ``+OK`` for STLS is queued before this: start TLS, then :meth:`Pop3Session.tls_started`."""


@dataclass(slots=True)  # not frozen: one per RETR, and a frozen __init__ costs a microsecond more
class SendMessage:
    """Send *ok* then message *message*, dot-stuffed, then ``.``; then :meth:`Pop3Session.message_sent`.

    *top_lines* None means the whole message (RETR), else headers + that many
    body lines. If the message can no longer be read the adapter sends
    nothing and says so to :meth:`Pop3Session.message_sent`.
    """

    message: "Pop3Message"
    top_lines: int | None
    ok: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """UPDATE phase: remove *deleted*, mark *retrieved* as seen; then :meth:`Pop3Session.update_done`."""

    deleted: list
    retrieved: list


# ----------------------------------------------------------------- model


@dataclass(slots=True)
class Pop3Message:
    number: int
    uid: str
    size: int
    ref: Any  # the storage layer's handle (a MessageFile)
    deleted: bool = False
    retrieved: bool = False


@dataclass(frozen=True)
class Pop3Policy:
    """What a session may offer; set by the adapter per connection."""

    hostname: str = "localhost"
    apop_timestamp: str | None = None  # "<pid.clock@host>" only when APOP secrets exist
    tls_available: bool = False
    tls_active: bool = False
    plaintext_auth: str = ALWAYS  # USER/PASS, AUTH PLAIN: twisted_netapps.mail.plaintext
    loopback: bool = False  # the client is on this host
    max_bad_commands: int = 10
    max_login_failures: int = 3
    implementation: str = "twisted-netapps"

    @property
    def plaintext_allowed(self) -> bool:
        return plaintext_allowed(self.plaintext_auth, tls=self.tls_active, loopback=self.loopback)


class State(enum.Enum):
    # Members are singletons: hash them by identity, in C (Enum's own __hash__
    # is a Python call, paid on every transition check of every command).
    __hash__ = object.__hash__

    AUTHORIZATION = "AUTHORIZATION"
    LOGGING_IN = "LOGGING_IN"  # CheckPassword/CheckApop out: -> login_accepted / login_rejected
    STARTING_TLS = "STARTING_TLS"  # StartTls out: -> tls_started
    TRANSACTION = "TRANSACTION"
    SENDING = "SENDING"  # SendMessage out: -> message_sent
    UPDATE = "UPDATE"  # Commit out: -> update_done
    CLOSED = "CLOSED"


_ = State
TRANSITIONS: dict[State, frozenset[State]] = {
    _.AUTHORIZATION: frozenset({_.LOGGING_IN, _.STARTING_TLS, _.CLOSED}),
    _.LOGGING_IN: frozenset({_.AUTHORIZATION, _.TRANSACTION, _.CLOSED}),
    _.STARTING_TLS: frozenset({_.AUTHORIZATION, _.CLOSED}),
    _.TRANSACTION: frozenset({_.SENDING, _.UPDATE, _.CLOSED}),
    _.SENDING: frozenset({_.TRANSACTION, _.CLOSED}),
    _.UPDATE: frozenset({_.CLOSED}),
    _.CLOSED: frozenset(),
}
del _


class CommandError(ValueError):
    """A line that is not a well-formed POP3 command."""


def parse_command(line: bytes) -> tuple[str, list[str], str]:
    """``(KEYWORD, args, rest)``; *rest* is everything after the keyword (for PASS).

    Keywords are 3-4 ASCII letters, case-insensitive; arguments are separated
    by spaces and printable. Raises :class:`CommandError` for anything else.
    """
    if _CONTROL_RE.search(line):
        raise CommandError("control characters in command")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("command is not valid UTF-8") from None
    keyword, _, rest = text.partition(" ")
    if not (3 <= len(keyword) <= 4 and keyword.isascii() and keyword.isalpha()):
        raise CommandError("unknown command")
    args = rest.split()
    if len(line) > MAX_ARG_BYTES and any(len(a.encode("utf-8")) > MAX_ARG_BYTES for a in args):
        raise CommandError("argument too long")
    return keyword.upper(), args, rest


def uidl_for(unique_name: str) -> str:
    """The UIDL of a Maildir message: its unique name when RFC 1939 allows it
    (1-70 characters in 0x21-0x7E), else a stable digest of it (long host names
    make Maildir names longer than 70)."""
    if 1 <= len(unique_name) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in unique_name):
        return unique_name
    return "h" + hashlib.sha256(unique_name.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def _ok(text: str) -> bytes:
    return f"+OK {text}\r\n".encode("utf-8")


def _err(text: str, code: str | None = None) -> bytes:
    return (f"-ERR [{code}] {text}\r\n" if code else f"-ERR {text}\r\n").encode("utf-8")


class _NoSuchMessage(Exception):
    def __init__(self, number: int, deleted: bool = False) -> None:
        super().__init__(f"message {number} already deleted" if deleted else f"no such message {number}")


class Pop3Session:
    """The POP3 state machine for one connection."""

    def __init__(self, policy: Pop3Policy, max_line: int = 4096) -> None:
        self.policy = policy
        self._machine = StateMachine(State.AUTHORIZATION, TRANSITIONS)
        self._input = LineBuffer(max_line)
        self.user: str | None = None  # after USER
        self.authenticated_user: str | None = None
        self.messages: list[Pop3Message] = []
        self.bad_commands = 0
        self.login_failures = 0
        #: Command lines taken from the input so far (the adapter's per-command deadline restarts on each).
        self.lines = 0
        self._sasl_pending = False
        self._eof = False

    @property
    def state(self) -> State:
        return self._machine.state

    @property
    def waiting(self) -> bool:
        """A request is out: the session reads nothing until the adapter answers it."""
        state = self._machine.state  # (identity tests: an Enum's hash is a Python call)
        return not (state is State.AUTHORIZATION or state is State.TRANSACTION or state is State.CLOSED)

    @property
    def partial_line(self) -> bool:
        """Bytes of an unfinished command line are buffered (and would be read now)."""
        state = self._machine.state
        return (state is State.AUTHORIZATION or state is State.TRANSACTION) and not self._input.is_empty()

    # -------------------------------------------------------- entry points

    def greeting(self) -> list:
        stamp = f" {self.policy.apop_timestamp}" if self.policy.apop_timestamp else ""
        return [Send(_ok(f"POP3 server ready{stamp}"))]

    def receive_data(self, data: bytes) -> list:
        # Download loops send "RETR n" and wait, one at a time: answer a lone,
        # plainly valid RETR without the general line and command machinery
        # (measured: a third of our per-message CPU in the RETR benchmark).
        if (
            data[:5].upper() == b"RETR "
            and data.endswith(b"\r\n")
            and data.find(b"\n") == len(data) - 1
            and self._machine.state is State.TRANSACTION
            and not self._sasl_pending
            and self._input.is_empty()
        ):
            event = self._quick_retr(data[5:-2])
            if event is not None:
                self.lines += 1
                return [event]
        if self._machine.state is State.CLOSED:
            return []
        self._input.feed(data)
        return self._process()

    def receive_eof(self) -> list:
        """The client half-closed: answer what it sent (a QUIT still runs the UPDATE phase), then close."""
        self._eof = True
        return self._process()

    def login_accepted(self, user: str, messages: list[Pop3Message]) -> list:
        """The adapter logged *user* in and locked the mailbox holding *messages*."""
        self._answer(State.LOGGING_IN, State.TRANSACTION)
        self.authenticated_user = user
        self.messages = messages
        count, octets = self._totals()
        return [Send(_ok(f"Logged in: {count} messages ({octets} octets)"))] + self._process()

    def login_rejected(self, *, in_use: bool = False, temporary: bool = False) -> list:
        """The login failed (the adapter has already waited out the failure delay)."""
        self._answer(State.LOGGING_IN, State.AUTHORIZATION)
        self.user = None
        if in_use:
            return [Send(_err("mailbox is locked by another POP3 session", "IN-USE"))] + self._process()
        if temporary:
            return [Send(_err("temporary failure, try again later", "SYS/TEMP"))] + self._process()
        self.login_failures += 1
        if self.login_failures >= self.policy.max_login_failures:
            return self._close(_err("too many failed logins", "AUTH"))
        return [Send(_err("invalid user name or password", "AUTH"))] + self._process()

    def tls_started(self) -> list:
        """TLS is up: forget anything said in the clear (RFC 2595 section 4)."""
        self._answer(State.STARTING_TLS, State.AUTHORIZATION)
        self.policy = replace(self.policy, tls_active=True)
        self.user = None
        return self._process()

    def message_sent(self, *, missing: bool = False, unreadable: bool = False) -> list:
        """The last :class:`SendMessage` is done (handed to the transport in full, or
        streamed); or it was not sent: *missing* (removed by another client) or
        *unreadable* (an I/O error)."""
        self._answer(State.SENDING, State.TRANSACTION)
        if missing:
            return [Send(_err("message was removed by another client", "SYS/PERM"))] + self._process()
        if unreadable:
            return [Send(_err("cannot read the message now, try again later", "SYS/TEMP"))] + self._process()
        return self._process()

    def update_done(self, failures: int) -> list:
        self._answer(State.UPDATE, State.CLOSED)
        if failures:
            return [Send(_err(f"{failures} messages could not be removed", "SYS/TEMP")), Close()]
        return [Send(_ok("Bye")), Close()]

    # ------------------------------------------------------------ machinery

    def _answer(self, expected: State, to: State) -> None:
        if self._machine.state is not expected:
            raise LocalProtocolError(f"answer for {expected.name} while {self._machine.state.name}")
        self._machine.move(to)

    def _process(self) -> list:
        if not self._eof and self._input.is_empty():
            return []  # (the common case after a RETR: nothing more was sent meanwhile)
        events: list = []
        machine = self._machine
        while machine.state is State.TRANSACTION or machine.state is State.AUTHORIZATION:
            line = self._input.next_line()
            if line is None:
                break
            self.lines += 1
            if line is OVERLONG:
                events += self._bad("line too long")
            else:
                events += self._line(line)
        if self._eof and (machine.state is State.TRANSACTION or machine.state is State.AUTHORIZATION):
            # Everything the client sent before its FIN has been answered.
            machine.move(State.CLOSED)
            events.append(Close())
        return events

    def _line(self, line: bytes) -> list:
        if self._sasl_pending:
            self._sasl_pending = False
            return self._sasl_plain_response(line)
        try:
            keyword, args, rest = parse_command(line)
        except CommandError as e:
            return self._bad(str(e))
        state = self._machine.state
        handler = COMMANDS.get((state, keyword))
        if handler is None:
            if keyword in KEYWORDS:
                return self._bad(f"{keyword} not allowed in the {state.value} state")
            return self._bad("unknown command")
        try:
            return handler(self, args, rest)
        except CommandError as e:
            return self._bad(str(e))

    def _close(self, reply: bytes) -> list:
        self._machine.move(State.CLOSED)
        return [Send(reply), Close()]

    def _bad(self, text: str) -> list:
        self.bad_commands += 1
        if self.bad_commands >= self.policy.max_bad_commands:
            return self._close(_err(f"{text}; too many bad commands, closing"))
        return [Send(_err(text))]

    def _totals(self) -> tuple[int, int]:
        live = [m for m in self.messages if not m.deleted]
        return len(live), sum(m.size for m in live)

    def _message(self, arg: str) -> Pop3Message:
        if not _NUMBER_RE.match(arg):
            raise CommandError(f"invalid message number {ascii(arg)}")  # never echo 8-bit bytes
        number = int(arg)
        if not 1 <= number <= len(self.messages):
            raise _NoSuchMessage(number)
        message = self.messages[number - 1]
        if message.deleted:
            raise _NoSuchMessage(number, deleted=True)
        return message

    def _capabilities(self) -> list[str]:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._machine.state is State.AUTHORIZATION:
            if self.policy.plaintext_allowed:
                caps += ["USER", "SASL PLAIN"]
            if self.policy.tls_available and not self.policy.tls_active:
                caps.append("STLS")
        caps.append(f"IMPLEMENTATION {self.policy.implementation}")
        return caps

    def _plaintext_refused(self) -> list:
        return [Send(_err("plaintext authentication disallowed on non-secure connections; use STLS", "AUTH"))]

    def _send_message(self, message: Pop3Message, top_lines: int | None, ok: bytes) -> list:
        self._machine.move(State.SENDING)
        return [SendMessage(message, top_lines, ok)]

    def _quick_retr(self, arg: bytes) -> SendMessage | None:
        """``RETR <arg>`` when it is plainly valid: the event the general path would
        give, without the parser. None means "not that simple": take the general path."""
        if not (0 < len(arg) < 10 and arg.isdigit()):
            return None
        number = int(arg)
        if not 1 <= number <= len(self.messages):
            return None
        message = self.messages[number - 1]
        if message.deleted:
            return None
        message.retrieved = True
        self._machine.move(State.SENDING)
        return SendMessage(message, None, b"+OK %d octets\r\n" % message.size)

    # -------------------------------------------------- either state

    def _capa(self, args, rest) -> list:
        body = "".join(f"{c}\r\n" for c in self._capabilities())
        return [Send(f"+OK Capability list follows\r\n{body}.\r\n".encode("ascii"))]

    def _noop(self, args, rest) -> list:
        if args:
            raise CommandError("NOOP takes no arguments")
        return [Send(_ok("nothing happens"))]

    # -------------------------------------------------- AUTHORIZATION

    def _quit_unauthenticated(self, args, rest) -> list:
        return self._close(_ok("Bye"))

    def _user(self, args, rest) -> list:
        if not self.policy.plaintext_allowed:
            return self._plaintext_refused()
        if len(args) != 1:
            raise CommandError("usage: USER name")
        self.user = args[0]
        # The same answer for every name: USER must not reveal which accounts exist.
        return [Send(_ok("send PASS"))]

    def _pass(self, args, rest) -> list:
        if self.user is None:
            return [Send(_err("USER first"))]
        if not rest:
            raise CommandError("usage: PASS password")
        user, self.user = self.user, None
        self._machine.move(State.LOGGING_IN)
        return [CheckPassword(user, rest)]

    def _apop(self, args, rest) -> list:
        if self.policy.apop_timestamp is None:
            return [Send(_err("APOP is not available on this server"))]
        if len(args) != 2 or not _DIGEST_RE.match(args[1]):
            raise CommandError("usage: APOP name digest")
        self.user = None
        self._machine.move(State.LOGGING_IN)
        return [CheckApop(args[0], args[1].lower(), self.policy.apop_timestamp)]

    def _auth(self, args, rest) -> list:
        if not args:
            # RFC 1734 clients ask for the mechanism list this way.
            return [Send(b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n")]
        if args[0].upper() != "PLAIN":
            return [Send(_err(f"unsupported SASL mechanism {ascii(args[0])}"))]
        if not self.policy.plaintext_allowed:
            return self._plaintext_refused()
        if len(args) > 2:
            raise CommandError("usage: AUTH PLAIN [initial-response]")
        if len(args) == 2 and args[1] != "=":
            return self._sasl_plain_response(args[1].encode("ascii", "replace"))
        self._sasl_pending = True
        return [Send(b"+ \r\n")]

    def _sasl_plain_response(self, line: bytes) -> list:
        if line.strip() == b"*":
            return [Send(_err("AUTH cancelled"))]
        try:
            decoded = base64.b64decode(line.strip(), validate=True)
            authzid, authcid, password = decoded.decode("utf-8").split("\x00")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return self._bad("malformed SASL PLAIN response")
        if authzid and authzid != authcid:
            return [Send(_err("authorization identity must be empty or the user", "AUTH"))]
        if not authcid or not password:
            return self._bad("malformed SASL PLAIN response")
        self._machine.move(State.LOGGING_IN)
        return [CheckPassword(authcid, password)]

    def _stls(self, args, rest) -> list:
        if not self.policy.tls_available:
            return [Send(_err("TLS is not available"))]
        if self.policy.tls_active:
            return [Send(_err("TLS is already active"))]
        # Anything pipelined after STLS was sent in the clear: drop it (CVE-2011-0411 class).
        self._input.clear()
        self._machine.move(State.STARTING_TLS)
        return [Send(_ok("Begin TLS negotiation")), StartTls()]

    # -------------------------------------------------- TRANSACTION

    def _stat(self, args, rest) -> list:
        if args:
            raise CommandError("STAT takes no arguments")
        count, octets = self._totals()
        return [Send(_ok(f"{count} {octets}"))]

    def _scan_listing(self, args, line_of, what: str) -> list:
        if len(args) > 1:
            raise CommandError(f"usage: {what} [msg]")
        if args:
            try:
                message = self._message(args[0])
            except _NoSuchMessage as e:
                return [Send(_err(str(e)))]
            return [Send(_ok(line_of(message)))]
        lines = [f"{line_of(m)}\r\n" for m in self.messages if not m.deleted]
        count, octets = self._totals()
        head = f"+OK {count} messages ({octets} octets)\r\n"
        return [Send((head + "".join(lines) + ".\r\n").encode("utf-8"))]

    def _list(self, args, rest) -> list:
        return self._scan_listing(args, lambda m: f"{m.number} {m.size}", "LIST")

    def _uidl(self, args, rest) -> list:
        return self._scan_listing(args, lambda m: f"{m.number} {m.uid}", "UIDL")

    def _retr(self, args, rest) -> list:
        if len(args) != 1:
            raise CommandError("usage: RETR msg")
        try:
            message = self._message(args[0])
        except _NoSuchMessage as e:
            return [Send(_err(str(e)))]
        message.retrieved = True
        return self._send_message(message, None, _ok(f"{message.size} octets"))

    def _top(self, args, rest) -> list:
        if len(args) != 2 or not _NUMBER_RE.match(args[1]):
            raise CommandError("usage: TOP msg lines")
        try:
            message = self._message(args[0])
        except _NoSuchMessage as e:
            return [Send(_err(str(e)))]
        return self._send_message(message, int(args[1]), _ok("top of message follows"))

    def _dele(self, args, rest) -> list:
        if len(args) != 1:
            raise CommandError("usage: DELE msg")
        try:
            message = self._message(args[0])
        except _NoSuchMessage as e:
            return [Send(_err(str(e)))]
        message.deleted = True
        return [Send(_ok(f"message {message.number} marked for deletion"))]

    def _rset(self, args, rest) -> list:
        if args:
            raise CommandError("RSET takes no arguments")
        for message in self.messages:
            message.deleted = False
        count, octets = self._totals()
        return [Send(_ok(f"maildrop has {count} messages ({octets} octets)"))]

    def _quit(self, args, rest) -> list:
        self._machine.move(State.UPDATE)
        deleted = [m for m in self.messages if m.deleted]
        retrieved = [m for m in self.messages if m.retrieved and not m.deleted]
        return [Commit(deleted, retrieved)]


Handler = Callable[[Pop3Session, list, str], list]
_A, _T = State.AUTHORIZATION, State.TRANSACTION
#: What each command does in each state: (state, KEYWORD) -> handler. A keyword
#: known in another state gets "not allowed in this state", any other "unknown".
COMMANDS: dict[tuple[State, str], Handler] = {
    (_A, "CAPA"): Pop3Session._capa,
    (_A, "QUIT"): Pop3Session._quit_unauthenticated,
    (_A, "USER"): Pop3Session._user,
    (_A, "PASS"): Pop3Session._pass,
    (_A, "APOP"): Pop3Session._apop,
    (_A, "AUTH"): Pop3Session._auth,
    (_A, "STLS"): Pop3Session._stls,
    (_T, "CAPA"): Pop3Session._capa,
    (_T, "NOOP"): Pop3Session._noop,
    (_T, "STAT"): Pop3Session._stat,
    (_T, "LIST"): Pop3Session._list,
    (_T, "UIDL"): Pop3Session._uidl,
    (_T, "RETR"): Pop3Session._retr,
    (_T, "TOP"): Pop3Session._top,
    (_T, "DELE"): Pop3Session._dele,
    (_T, "RSET"): Pop3Session._rset,
    (_T, "QUIT"): Pop3Session._quit,
}
del _A, _T
KEYWORDS = frozenset(keyword for _state, keyword in COMMANDS)


def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 APOP digest (what the client sends)."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()
