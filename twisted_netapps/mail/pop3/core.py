"""POP3 protocol core (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 SASL PLAIN).

Sans-I/O: :class:`Pop3Session` takes command lines and returns events; the
Twisted adapter (:mod:`twisted_netapps.mail.pop3.protocol`) does the I/O,
the logins and the mailbox work. What this core guarantees, and stock
``twisted.mail.pop3`` did not:

- the three phases exactly: ``USER``/``PASS``/``APOP``/``AUTH``/``STLS`` only in
  AUTHORIZATION, mail commands only in TRANSACTION; ``DELE`` only marks, and
  the marked messages are removed in the UPDATE phase after ``QUIT`` (a dropped
  connection never reaches it, so it deletes nothing);
- every error is an ``-ERR`` reply (with RFC 2449/3206 response codes) and the
  session goes on, until too many bad commands or failed logins;
- ``UIDL n`` and ``LIST n`` answer with the message number; ``LIST`` sizes are
  the exact CRLF octets ``RETR`` sends (dot-stuffing not counted);
- ``CAPA`` says ``PIPELINING`` (commands are processed strictly in order, replies
  coalesced) and advertises ``USER``/``SASL``/``STLS``/APOP only when usable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, replace
from typing import Any

AUTHORIZATION = "AUTHORIZATION"
TRANSACTION = "TRANSACTION"
UPDATE = "UPDATE"
CLOSED = "CLOSED"

MAX_ARG_BYTES = 255  # RFC 2449: arguments up to 40 octets; be generous, not unbounded
_DIGEST_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_NUMBER_RE = re.compile(r"^[0-9]{1,9}$")
# Dot-stuffing: a regex substitution, not bytes.replace(b"\n.", b"\n.."): CPython's
# two-byte search is slow on mail text (its skip filter collides "." with
# letters such as "n"); measured on a 4 KiB message, 2.5 us against 7.5 us.
_LINE_START_DOT = re.compile(rb"\n\.")


# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class Send:
    """Bytes to send (already framed with CRLF)."""

    data: bytes


@dataclass(frozen=True)
class CheckPassword:
    """Log *user* in with *password* (USER/PASS or AUTH PLAIN)."""

    user: str
    password: str


@dataclass(frozen=True)
class CheckApop:
    """Log *user* in by APOP: *digest* = md5(timestamp + secret)."""

    user: str
    digest: str
    timestamp: str


@dataclass(frozen=True)
class StartTls:
    """The ``+OK`` for STLS has been queued: start TLS now, discard anything buffered."""


@dataclass(slots=True)  # not frozen: created per RETR, and frozen __init__ is slow
class SendMessage:
    """Send *ok* then message *message*, dot-stuffed, then ``.``.

    *top_lines* None means the whole message (RETR), else headers + that many
    body lines. The adapter sends an ``-ERR`` instead of *ok* if the message
    can no longer be read (removed by another client meanwhile).
    """

    message: "Pop3Message"
    top_lines: int | None
    ok: bytes


@dataclass(frozen=True)
class Commit:
    """UPDATE phase: remove *deleted*, mark *retrieved* as seen; then call :meth:`Pop3Session.update_done`."""

    deleted: list
    retrieved: list


@dataclass(frozen=True)
class Close:
    """Close the connection once everything queued is sent."""


# ----------------------------------------------------------------- model


@dataclass
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
    plaintext_allowed: bool = True  # USER/PASS, AUTH PLAIN
    max_bad_commands: int = 10
    max_login_failures: int = 3
    implementation: str = "twisted-netapps"


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


_CONTROL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


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


class Pop3Session:
    """The POP3 state machine for one connection."""

    def __init__(self, policy: Pop3Policy) -> None:
        self.policy = policy
        self.state = AUTHORIZATION
        self.user: str | None = None  # after USER
        self.authenticated_user: str | None = None
        self.messages: list[Pop3Message] = []
        self.bad_commands = 0
        self.login_failures = 0
        self.waiting = False  # a login or an update is in progress: feed no lines
        self._sasl_pending = False

    # -------------------------------------------------------- entry points

    def greeting(self) -> bytes:
        stamp = f" {self.policy.apop_timestamp}" if self.policy.apop_timestamp else ""
        return _ok(f"POP3 server ready{stamp}")

    def receive_line(self, line: bytes) -> list:
        if self.state in (UPDATE, CLOSED) or self.waiting:
            return []
        if self._sasl_pending:
            self._sasl_pending = False
            return self._sasl_plain_response(line)
        try:
            keyword, args, rest = parse_command(line)
        except CommandError as e:
            return self._bad(str(e))
        handler = _HANDLERS[self.state].get(keyword)
        if handler is None:
            if keyword in _ALL_COMMANDS:
                return self._bad(f"{keyword} not allowed in the {self.state} state")
            return self._bad("unknown command")
        try:
            return handler(self, args, rest)
        except CommandError as e:
            return self._bad(str(e))

    def quick_retr(self, arg: bytes) -> "SendMessage | None":
        """``RETR <arg>`` when it is plainly valid: the event :meth:`receive_line`
        would return, without the general parser (the download loop's hot path).
        None means "not that simple": pass the line to :meth:`receive_line`."""
        if self.state != TRANSACTION or self.waiting or self._sasl_pending or not (0 < len(arg) < 10 and arg.isdigit()):
            return None
        number = int(arg)
        if not 1 <= number <= len(self.messages):
            return None
        message = self.messages[number - 1]
        if message.deleted:
            return None
        message.retrieved = True
        return SendMessage(message, None, b"+OK %d octets\r\n" % message.size)

    def line_too_long(self) -> list:
        return self._bad("line too long")

    def login_accepted(self, user: str, messages: list[Pop3Message]) -> list:
        """The adapter logged *user* in and locked the mailbox holding *messages*."""
        self.waiting = False
        self.state = TRANSACTION
        self.authenticated_user = user
        self.messages = messages
        count, octets = self._totals()
        return [Send(_ok(f"Logged in: {count} messages ({octets} octets)"))]

    def login_rejected(self, *, in_use: bool = False, temporary: bool = False) -> list:
        """The login failed (the adapter has already waited out the failure delay)."""
        self.waiting = False
        self.user = None
        if in_use:
            return [Send(_err("mailbox is locked by another POP3 session", "IN-USE"))]
        if temporary:
            return [Send(_err("temporary failure, try again later", "SYS/TEMP"))]
        self.login_failures += 1
        if self.login_failures >= self.policy.max_login_failures:
            self.state = CLOSED
            return [Send(_err("too many failed logins", "AUTH")), Close()]
        return [Send(_err("invalid user name or password", "AUTH"))]

    def tls_started(self) -> None:
        """TLS is up: forget anything said in the clear (RFC 2595 section 4)."""
        self.policy = replace(self.policy, tls_active=True, plaintext_allowed=True)
        self.user = None

    def update_done(self, failures: int) -> list:
        self.state = CLOSED
        if failures:
            return [Send(_err(f"{failures} messages could not be removed", "SYS/TEMP")), Close()]
        return [Send(_ok("Bye")), Close()]

    # ------------------------------------------------------------ helpers

    def _bad(self, text: str) -> list:
        self.bad_commands += 1
        if self.bad_commands >= self.policy.max_bad_commands:
            self.state = CLOSED
            return [Send(_err(f"{text}; too many bad commands, closing")), Close()]
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
        if self.state == AUTHORIZATION:
            if self.policy.plaintext_allowed:
                caps += ["USER", "SASL PLAIN"]
            if self.policy.tls_available and not self.policy.tls_active:
                caps.append("STLS")
        caps.append(f"IMPLEMENTATION {self.policy.implementation}")
        return caps

    def _plaintext_refused(self) -> list:
        return [Send(_err("plaintext authentication disallowed on non-secure connections; use STLS", "AUTH"))]

    # -------------------------------------------------- either state

    def _capa(self, args, rest) -> list:
        body = "".join(f"{c}\r\n" for c in self._capabilities())
        return [Send(f"+OK Capability list follows\r\n{body}.\r\n".encode("ascii"))]

    _authorization_CAPA = _transaction_CAPA = _capa

    def _noop(self, args, rest) -> list:
        if args:
            raise CommandError("NOOP takes no arguments")
        return [Send(_ok("nothing happens"))]

    _transaction_NOOP = _noop

    # -------------------------------------------------- AUTHORIZATION

    def _authorization_QUIT(self, args, rest) -> list:
        self.state = CLOSED
        return [Send(_ok("Bye")), Close()]

    def _authorization_USER(self, args, rest) -> list:
        if not self.policy.plaintext_allowed:
            return self._plaintext_refused()
        if len(args) != 1:
            raise CommandError("usage: USER name")
        self.user = args[0]
        # The same answer for every name: USER must not reveal which accounts exist.
        return [Send(_ok("send PASS"))]

    def _authorization_PASS(self, args, rest) -> list:
        if self.user is None:
            return [Send(_err("USER first"))]
        if not rest:
            raise CommandError("usage: PASS password")
        user, self.user = self.user, None
        self.waiting = True
        return [CheckPassword(user, rest)]

    def _authorization_APOP(self, args, rest) -> list:
        if self.policy.apop_timestamp is None:
            return [Send(_err("APOP is not available on this server"))]
        if len(args) != 2 or not _DIGEST_RE.match(args[1]):
            raise CommandError("usage: APOP name digest")
        self.user = None
        self.waiting = True
        return [CheckApop(args[0], args[1].lower(), self.policy.apop_timestamp)]

    def _authorization_AUTH(self, args, rest) -> list:
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
        self.waiting = True
        return [CheckPassword(authcid, password)]

    def _authorization_STLS(self, args, rest) -> list:
        if not self.policy.tls_available:
            return [Send(_err("TLS is not available"))]
        if self.policy.tls_active:
            return [Send(_err("TLS is already active"))]
        return [Send(_ok("Begin TLS negotiation")), StartTls()]

    # -------------------------------------------------- TRANSACTION

    def _transaction_STAT(self, args, rest) -> list:
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

    def _transaction_LIST(self, args, rest) -> list:
        return self._scan_listing(args, lambda m: f"{m.number} {m.size}", "LIST")

    def _transaction_UIDL(self, args, rest) -> list:
        return self._scan_listing(args, lambda m: f"{m.number} {m.uid}", "UIDL")

    def _transaction_RETR(self, args, rest) -> list:
        if len(args) != 1:
            raise CommandError("usage: RETR msg")
        try:
            message = self._message(args[0])
        except _NoSuchMessage as e:
            return [Send(_err(str(e)))]
        message.retrieved = True
        return [SendMessage(message, None, _ok(f"{message.size} octets"))]

    def _transaction_TOP(self, args, rest) -> list:
        if len(args) != 2 or not _NUMBER_RE.match(args[1]):
            raise CommandError("usage: TOP msg lines")
        try:
            message = self._message(args[0])
        except _NoSuchMessage as e:
            return [Send(_err(str(e)))]
        return [SendMessage(message, int(args[1]), _ok("top of message follows"))]

    def _transaction_DELE(self, args, rest) -> list:
        if len(args) != 1:
            raise CommandError("usage: DELE msg")
        try:
            message = self._message(args[0])
        except _NoSuchMessage as e:
            return [Send(_err(str(e)))]
        message.deleted = True
        return [Send(_ok(f"message {message.number} marked for deletion"))]

    def _transaction_RSET(self, args, rest) -> list:
        if args:
            raise CommandError("RSET takes no arguments")
        for message in self.messages:
            message.deleted = False
        count, octets = self._totals()
        return [Send(_ok(f"maildrop has {count} messages ({octets} octets)"))]

    def _transaction_QUIT(self, args, rest) -> list:
        self.state = UPDATE
        deleted = [m for m in self.messages if m.deleted]
        retrieved = [m for m in self.messages if m.retrieved and not m.deleted]
        return [Commit(deleted, retrieved)]


# state -> keyword -> handler, from the _<state>_<KEYWORD> methods.
_HANDLERS = {
    state: {
        name.split("_", 2)[2]: getattr(Pop3Session, name)
        for name in dir(Pop3Session)
        if name.startswith(f"_{state.lower()}_") and name.split("_", 2)[2].isupper()
    }
    for state in (AUTHORIZATION, TRANSACTION)
}
_HANDLERS[UPDATE] = _HANDLERS[CLOSED] = {}


class _NoSuchMessage(Exception):
    def __init__(self, number: int, deleted: bool = False) -> None:
        super().__init__(f"message {number} already deleted" if deleted else f"no such message {number}")


_ALL_COMMANDS = {
    "USER", "PASS", "APOP", "AUTH", "STLS", "CAPA", "QUIT", "STAT", "LIST", "UIDL",
    "RETR", "TOP", "DELE", "RSET", "NOOP",
}


def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 APOP digest (what the client sends)."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def apop_matches(timestamp: str, secret: str, digest: str) -> bool:
    return hmac.compare_digest(apop_digest(timestamp, secret), digest.lower())


# ----------------------------------------------------------------- framing


class LineBuffer:
    """Splits received bytes into command lines, bounded by *max_line*.

    ``next_line()`` returns a line without its CRLF/LF, :data:`OVERLONG` once
    for a line over the limit (whose rest is then discarded up to its LF),
    or None when no complete line is buffered.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def is_empty(self) -> bool:
        return not self._buffer and not self._discarding

    def clear(self) -> None:
        self._buffer.clear()
        self._discarding = False

    def next_line(self):
        buffer = self._buffer
        end = buffer.find(b"\n")
        if self._discarding:
            if end < 0:
                buffer.clear()
                return None
            del buffer[: end + 1]
            self._discarding = False
            end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > self.max_line:
                buffer.clear()
                self._discarding = True
                return OVERLONG
            return None
        if end > self.max_line:
            del buffer[: end + 1]
            return OVERLONG
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line


OVERLONG = object()


# ----------------------------------------------------------------- message body


def _stuff_dots(data: bytes) -> bytes:
    """*data* with a second "." after every LF followed by "." (the first line is the caller's)."""
    return _LINE_START_DOT.sub(b"\n..", data)


class MessageEncoder:
    """Message bytes -> POP3 multi-line body: CRLF line ends, dot-stuffed.

    Chunk-safe: a CR at the end of one chunk is held back until the next, and
    line starts are tracked across chunks. ``finish()`` adds the final CRLF if
    the message lacks one, and the terminating ``.``.
    """

    def __init__(self) -> None:
        self._at_line_start = True
        self._held_cr = False
        self._ended_with_newline = True

    def feed(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if not chunk:
            return b""
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
            if not chunk:
                return b""
        if b"\n" in chunk and chunk.count(b"\n") != chunk.count(b"\r\n"):
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out = _stuff_dots(chunk)
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        self._at_line_start = out.endswith(b"\n")
        self._ended_with_newline = self._at_line_start
        return out

    def finish(self) -> bytes:
        tail = b""
        if self._held_cr:  # a final lone CR ends the last line (as crlf_size_of counts it)
            self._held_cr = False
            tail = b"\r\n"
        elif not self._ended_with_newline:
            tail = b"\r\n"
        return tail + b".\r\n"


def encode_message(data: bytes, size_from_name: int | None = None, prefix: bytes = b"") -> bytes:
    """A whole message as a POP3 multi-line body (what :class:`MessageEncoder` does, in one go),
    after *prefix* (the ``+OK`` line: one buffer for the whole reply, copied once).

    Checking every LF for its CR costs as much as the rest of a RETR (two
    full scans), so a file whose length equals the CRLF size in its name
    (``S=``, which our store writes for CRLF-normalised files; Dovecot's
    ``W=`` differs from an LF file's length) and whose first line ends in
    CRLF is taken as CRLF-clean. LF-only files (Courier's ``S=`` is the
    physical size) fail the first-line test and take the exact path.
    """
    first_lf = data.find(b"\n")
    if (
        size_from_name is not None
        and len(data) == size_from_name
        and (first_lf < 0 or (first_lf > 0 and data[first_lf - 1] == 0x0D))
    ):
        clean = not data.endswith(b"\r")
    else:
        clean = not data.endswith(b"\r") and data.count(b"\n") == data.count(b"\r\n")
    if not clean:
        encoder = MessageEncoder()
        return prefix + encoder.feed(data) + encoder.finish()
    out = _stuff_dots(data)
    if out[:1] == b".":
        prefix += b"."
    return b"".join((prefix, out, b".\r\n" if not out or out.endswith(b"\n") else b"\r\n.\r\n"))


def top_of_message(data_lines, body_lines: int) -> bytes:
    """Headers, the blank line, and the first *body_lines* lines of the body."""
    out = []
    in_body = False
    remaining = body_lines
    for line in data_lines:
        if in_body:
            if remaining <= 0:
                break
            remaining -= 1
        elif line in (b"\r\n", b"\n"):
            in_body = True
        out.append(line)
    return b"".join(out)
