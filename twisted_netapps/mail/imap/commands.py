"""IMAP commands as typed requests: one frozen dataclass per command, one parser per command.

Each parser reads the arguments after the command name from a
:class:`~twisted_netapps.mail.imap.syntax.Reader` and returns the request,
or raises :class:`~twisted_netapps.mail.imap.syntax.ParseError` (a tagged
``BAD``). Mailbox names come out as ``str``: decoded from modified UTF-7
(RFC 3501 5.1.3), or from UTF-8 once the client has sent ``ENABLE
UTF8=ACCEPT`` (RFC 6855). No Twisted here.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from dataclasses import dataclass

from twisted_netapps.mail.imap import mutf7
from twisted_netapps.mail.imap.fetchspec import FetchItem, parse_fetch_items
from twisted_netapps.mail.imap.syntax import ParseError, Reader, SeqSet

MAX_ID_PAIRS = 30  # RFC 2971 3.3
MAX_ID_VALUE = 1024
MAX_PATTERNS = 100
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DATE_TIME_RE = re.compile(
    rb"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


# ------------------------------------------------------------ requests the core answers itself


@dataclass(frozen=True)
class Capability:
    pass


@dataclass(frozen=True)
class Logout:
    pass


@dataclass(frozen=True)
class StartTls:
    pass


@dataclass(frozen=True)
class Login:
    user: bytes
    password: bytes


@dataclass(frozen=True)
class Authenticate:
    mechanism: str
    initial: bytes | None  # SASL-IR (RFC 4959): the initial response, decoded; None if not sent


@dataclass(frozen=True)
class Id:
    params: tuple[tuple[bytes, bytes | None], ...]


@dataclass(frozen=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Namespace:
    pass


@dataclass(frozen=True)
class Noop:
    name: str = "NOOP"  # or CHECK


@dataclass(frozen=True)
class Idle:
    pass


# ------------------------------------------------------------ requests for the mailbox session


@dataclass(frozen=True)
class Select:
    mailbox: str
    readonly: bool


@dataclass(frozen=True)
class Create:
    mailbox: str


@dataclass(frozen=True)
class Delete:
    mailbox: str


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class Subscribe:
    mailbox: str
    subscribe: bool  # False: UNSUBSCRIBE


@dataclass(frozen=True)
class ListMailboxes:
    reference: str
    patterns: tuple[str, ...]
    lsub: bool = False
    subscribed_only: bool = False  # LIST (SUBSCRIBED)
    special_use_only: bool = False  # LIST (SPECIAL-USE) (RFC 6154)
    return_subscribed: bool = False


@dataclass(frozen=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Append:
    mailbox: str
    flags: tuple[bytes, ...]
    date: float | None
    message: bytes


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Unselect:
    pass


@dataclass(frozen=True)
class Expunge:
    uids: SeqSet | None = None  # UID EXPUNGE (RFC 4315)


@dataclass(frozen=True)
class Search:
    charset: str | None
    keys: list
    uid: bool = False


@dataclass(frozen=True)
class Fetch:
    messages: SeqSet
    items: tuple[FetchItem, ...]
    uid: bool = False


@dataclass(frozen=True)
class Store:
    messages: SeqSet
    mode: int  # +1 add, -1 remove, 0 replace
    silent: bool
    flags: tuple[bytes, ...]
    uid: bool = False


@dataclass(frozen=True)
class Copy:
    messages: SeqSet
    mailbox: str
    uid: bool = False
    move: bool = False  # MOVE (RFC 6851)


# ------------------------------------------------------------ argument pieces


def mailbox_name(raw: bytes, utf8: bool) -> str:
    """A mailbox name as sent -> str (modified UTF-7, or UTF-8 after ENABLE UTF8=ACCEPT)."""
    try:
        if utf8 or any(c > 0x7E for c in raw):
            # 8-bit names before ENABLE: clients that never heard of modified
            # UTF-7 send UTF-8; take it if it decodes (Dovecot does too).
            return raw.decode("utf-8")
        return mutf7.decode(raw)
    except (UnicodeDecodeError, ValueError):
        raise ParseError("invalid mailbox name") from None


def parse_date_time(raw: bytes) -> float:
    """``"17-Jul-1996 02:44:25 -0700"`` -> POSIX time."""
    match = _DATE_TIME_RE.match(raw)
    if match is None or match.group(2).lower().decode() not in _MONTHS:
        raise ParseError("bad date-time")
    day, month, year, hh, mm, ss, sign, zh, zm = match.groups()
    try:
        seconds = calendar.timegm((int(year), _MONTHS[month.lower().decode()], int(day), int(hh), int(mm), int(ss)))
    except (ValueError, OverflowError):
        raise ParseError("bad date-time") from None
    offset = (int(zh) * 60 + int(zm)) * 60
    return float(seconds - offset if sign == b"+" else seconds + offset)


# ------------------------------------------------------------ parsers (reader is after "NAME")


def _no_args(cls):
    def parse(reader: Reader, utf8: bool):
        reader.end()
        return cls()
    return parse


def _mailbox(reader: Reader, utf8: bool) -> str:
    reader.space()
    return mailbox_name(reader.astring(), utf8)


def parse_login(reader: Reader, utf8: bool) -> Login:
    reader.space()
    user = reader.astring()
    reader.space()
    password = reader.astring()
    reader.end()
    return Login(user, password)


def parse_authenticate(reader: Reader, utf8: bool) -> Authenticate:
    reader.space()
    mechanism = reader.atom().upper().decode("ascii")
    initial = None
    if reader.skip(b" "):
        initial = decode_sasl(reader.atom())
    reader.end()
    return Authenticate(mechanism, initial)


def decode_sasl(data: bytes) -> bytes:
    """A SASL response line: base64, or ``=`` for an empty one (RFC 4959)."""
    if data.strip() == b"=":
        return b""
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("not base64") from None


def parse_id(reader: Reader, utf8: bool) -> Id:
    reader.space()
    if reader.skip(b"NIL"):
        reader.end()
        return Id(())
    items = reader.paren_list(reader.nstring)
    reader.end()
    if len(items) % 2 or len(items) > 2 * MAX_ID_PAIRS:
        raise ParseError("ID takes up to 30 field/value pairs")
    if any(value is not None and len(value) > MAX_ID_VALUE for value in items):
        raise ParseError("ID value too long")
    pairs = tuple((items[i] or b"", items[i + 1]) for i in range(0, len(items), 2))
    return Id(pairs)


def parse_enable(reader: Reader, utf8: bool) -> Enable:
    names = []
    while reader.skip(b" "):
        names.append(reader.atom().upper().decode("ascii"))
    reader.end()
    if not names:
        raise ParseError("ENABLE needs a capability")
    return Enable(tuple(names))


def parse_select(readonly: bool):
    def parse(reader: Reader, utf8: bool) -> Select:
        name = _mailbox(reader, utf8)
        if reader.skip(b" "):  # select-params (RFC 4466): none supported
            raise ParseError("SELECT parameters are not supported")
        reader.end()
        return Select(name, readonly)
    return parse


def _one_mailbox(cls):
    def parse(reader: Reader, utf8: bool):
        name = _mailbox(reader, utf8)
        reader.end()
        return cls(name)
    return parse


def parse_rename(reader: Reader, utf8: bool) -> Rename:
    old = _mailbox(reader, utf8)
    new = _mailbox(reader, utf8)
    reader.end()
    return Rename(old, new)


def parse_subscribe(subscribe: bool):
    def parse(reader: Reader, utf8: bool) -> Subscribe:
        name = _mailbox(reader, utf8)
        reader.end()
        return Subscribe(name, subscribe)
    return parse


def parse_list(lsub: bool):
    """LIST, with the LIST-EXTENDED syntax (RFC 5258) that SPECIAL-USE clients send (RFC 6154)."""

    def parse(reader: Reader, utf8: bool) -> ListMailboxes:
        reader.space()
        selection: list[bytes] = []
        if not lsub and reader.peek() == 0x28:
            selection = [s.upper() for s in reader.paren_list(reader.atom)]
            reader.space()
        reference = mailbox_name(reader.astring(), utf8)
        reader.space()
        if not lsub and reader.peek() == 0x28:
            raw_patterns = reader.paren_list(reader.list_mailbox, allow_empty=False)
        else:
            raw_patterns = [reader.list_mailbox()]
        if len(raw_patterns) > MAX_PATTERNS:
            raise ParseError("too many patterns")
        returns: list[bytes] = []
        if not lsub and reader.skip(b" "):
            reader.expect(b"RETURN ", "RETURN")
            returns = [r.upper() for r in reader.paren_list(reader.atom)]
        reader.end()
        for option in selection:
            if option not in (b"SUBSCRIBED", b"SPECIAL-USE", b"RECURSIVEMATCH", b"REMOTE"):
                raise ParseError(f"unknown LIST selection option {option.decode()}")
        patterns = tuple(mailbox_name(p, utf8) for p in raw_patterns)
        return ListMailboxes(
            reference, patterns, lsub=lsub,
            subscribed_only=b"SUBSCRIBED" in selection,
            special_use_only=b"SPECIAL-USE" in selection,
            return_subscribed=b"SUBSCRIBED" in returns or b"SUBSCRIBED" in selection,
        )

    return parse


def parse_status(reader: Reader, utf8: bool) -> Status:
    name = _mailbox(reader, utf8)
    reader.space()
    items = [i.upper().decode("ascii") for i in reader.paren_list(reader.atom, allow_empty=False)]
    reader.end()
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"unknown STATUS item {item}")
    return Status(name, tuple(items))


def parse_append(reader: Reader, utf8: bool) -> Append:
    name = _mailbox(reader, utf8)
    reader.space()
    flags: list[bytes] = []
    date = None
    if reader.peek() == 0x28:
        flags = reader.paren_list(reader.flag)
        reader.space()
    if reader.peek() == 0x22:
        date = parse_date_time(reader.quoted())
        reader.space()
    if reader.skip(b"UTF8 ("):  # RFC 6855 4: APPEND ... UTF8 (~{n}message)
        literal = reader.literal()
        if literal is None:
            raise ParseError("UTF8 needs a literal8")
        reader.expect(b")", ")")
    else:
        literal = reader.literal()
        if literal is None:
            raise ParseError("APPEND needs the message as a literal")
    reader.end()
    return Append(name, tuple(flags), date, literal.data)


def parse_search(uid: bool):
    def parse(reader: Reader, utf8: bool) -> Search:
        reader.space()
        charset = None
        if reader.skip(b"CHARSET "):
            charset = reader.astring().upper().decode("ascii", "replace")
            reader.space()
        keys = reader.token_tree()
        if not keys:
            raise ParseError("SEARCH needs search keys")
        return Search(charset, keys, uid)
    return parse


def parse_fetch(uid: bool):
    def parse(reader: Reader, utf8: bool) -> Fetch:
        reader.space()
        messages = reader.seq_set()
        reader.space()
        items = parse_fetch_items(reader)
        if reader.skip(b" "):
            raise ParseError("FETCH modifiers are not supported")
        reader.end()
        return Fetch(messages, items, uid)
    return parse


def parse_store(uid: bool):
    def parse(reader: Reader, utf8: bool) -> Store:
        reader.space()
        messages = reader.seq_set()
        reader.space()
        mode = 1 if reader.skip(b"+") else -1 if reader.skip(b"-") else 0
        reader.expect(b"FLAGS", "FLAGS")
        silent = reader.skip(b".SILENT")
        reader.space()
        flags = reader.flag_list()
        reader.end()
        return Store(messages, mode, silent, tuple(flags), uid)
    return parse


def parse_copy(uid: bool, move: bool):
    def parse(reader: Reader, utf8: bool) -> Copy:
        reader.space()
        messages = reader.seq_set()
        name = _mailbox(reader, utf8)
        reader.end()
        return Copy(messages, name, uid, move)
    return parse


def parse_uid_expunge(reader: Reader, utf8: bool) -> Expunge:
    reader.space()
    uids = reader.seq_set()
    reader.end()
    return Expunge(uids)


UID_PARSERS = {
    b"FETCH": parse_fetch(True),
    b"STORE": parse_store(True),
    b"SEARCH": parse_search(True),
    b"COPY": parse_copy(True, False),
    b"MOVE": parse_copy(True, True),
    b"EXPUNGE": parse_uid_expunge,
}


def parse_uid(reader: Reader, utf8: bool):
    reader.space()
    name = reader.atom().upper()
    parser = UID_PARSERS.get(name)
    if parser is None:
        raise ParseError(f"UID {name.decode('ascii')} is not a UID command")
    return parser(reader, utf8)


PARSERS = {
    b"CAPABILITY": _no_args(Capability),
    b"NOOP": _no_args(Noop),
    b"LOGOUT": _no_args(Logout),
    b"ID": parse_id,
    b"STARTTLS": _no_args(StartTls),
    b"LOGIN": parse_login,
    b"AUTHENTICATE": parse_authenticate,
    b"ENABLE": parse_enable,
    b"NAMESPACE": _no_args(Namespace),
    b"SELECT": parse_select(False),
    b"EXAMINE": parse_select(True),
    b"CREATE": _one_mailbox(Create),
    b"DELETE": _one_mailbox(Delete),
    b"RENAME": parse_rename,
    b"SUBSCRIBE": parse_subscribe(True),
    b"UNSUBSCRIBE": parse_subscribe(False),
    b"LIST": parse_list(False),
    b"LSUB": parse_list(True),
    b"STATUS": parse_status,
    b"APPEND": parse_append,
    b"IDLE": _no_args(Idle),
    b"CHECK": lambda reader, utf8: (reader.end(), Noop("CHECK"))[1],
    b"CLOSE": _no_args(Close),
    b"UNSELECT": _no_args(Unselect),
    b"EXPUNGE": _no_args(Expunge),
    b"SEARCH": parse_search(False),
    b"FETCH": parse_fetch(False),
    b"STORE": parse_store(False),
    b"COPY": parse_copy(False, False),
    b"MOVE": parse_copy(False, True),
    b"UID": parse_uid,
}
