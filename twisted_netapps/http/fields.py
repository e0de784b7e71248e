"""HTTP fields (RFC 9110 section 5): names, values, lists and parameters.

Everything here works on ``bytes`` as they came off the wire. Field values may
carry obs-text (bytes 0x80-0xFF, e.g. an ETag with a Latin-1 letter): they are
kept exactly, never decoded, so a proxy forwards and stores what it received.

No Twisted imports: this is the bottom layer of the codec.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

# token = 1*tchar (RFC 9110 5.6.2)
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value may hold VCHAR, obs-text, SP and HTAB. CR, LF and NUL are
# "invalid and dangerous" (RFC 9110 5.5); other CTLs are retained.
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00\r\n]")
DIGITS = re.compile(rb"[0-9]+")
_OWS = b" \t"

# Hop-by-hop fields: never forwarded, never stored (RFC 9110 7.6.1 names
# Connection and the fields it lists, and gives Proxy-Connection, Keep-Alive,
# TE, Transfer-Encoding and Upgrade as examples). Trailer only describes our
# own framing of the body, which we re-frame.
HOP_BY_HOP = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"trailer"}
)


def is_token(value: bytes) -> bool:
    return TOKEN.fullmatch(value) is not None


def is_valid_value(value: bytes) -> bool:
    return _FORBIDDEN_IN_VALUE.search(value) is None


class Headers:
    """An ordered multiset of header fields.

    Each field keeps its name as received (for forwarding) and its lowercase
    form (for lookups). Repeated fields stay separate lines; ``get`` joins them
    with ", " (RFC 9110 5.3), ``get_all`` keeps them apart (Set-Cookie must
    never be joined). Lookups go through an index by lowercase name, built on
    the first one and dropped by any change: a message's fields are looked
    up a dozen times on the way through a proxy.
    """

    __slots__ = ("_fields", "_index", "_options")

    def __init__(self, fields: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._fields: list[tuple[bytes, bytes, bytes]] = [(name.lower(), name, value) for name, value in fields]
        self._index: dict[bytes, list[bytes]] | None = None
        self._options: frozenset[bytes] | None = None

    @classmethod
    def from_lines(cls, triples: list[tuple[bytes, bytes, bytes]]) -> "Headers":
        """From (lowercase name, name, value) triples, as :meth:`lines` gives them (taken, not copied)."""
        headers = cls.__new__(cls)
        headers._fields = triples
        headers._index = None
        headers._options = None
        return headers

    def _indexed(self) -> dict[bytes, bytes | list[bytes]]:
        # Values are the bytes themselves, a list only for repeated names: a
        # stored response's headers live long, and every list is one more
        # object for the cyclic garbage collector to walk.
        index = self._index
        if index is None:
            index = {}
            for lower, _name, value in self._fields:
                present = index.get(lower)
                if present is None:
                    index[lower] = value
                elif type(present) is list:
                    present.append(value)
                else:
                    index[lower] = [present, value]
            self._index = index
        return index

    def copy(self) -> "Headers":
        return Headers.from_lines(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        for _lower, name, value in self._fields:
            yield name, value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _l, n, v in self._fields]!r})"

    def __contains__(self, lower_name: bytes) -> bool:
        return lower_name in self._indexed()

    def has_any(self, lower_names: frozenset[bytes]) -> bool:
        for field in self._fields:
            if field[0] in lower_names:
                return True
        return False

    def names(self) -> set[bytes]:
        """The lowercase names present."""
        return set(self._indexed())

    def get_all(self, lower_name: bytes) -> tuple[bytes, ...]:
        """Every line of the field, in order."""
        index = self._index
        values = (index if index is not None else self._indexed()).get(lower_name)
        if values is None:
            return ()
        return (values,) if type(values) is bytes else tuple(values)

    def get(self, lower_name: bytes) -> bytes | None:
        """All lines of the field joined by ", ", or None when absent."""
        index = self._index
        values = (index if index is not None else self._indexed()).get(lower_name)
        if values is None or type(values) is bytes:
            return values
        return b", ".join(values)

    def index(self) -> dict[bytes, bytes | list[bytes]]:
        """Lowercase name -> its value, or the list of its values when repeated.

        The lookup table itself, for code that asks about many names at once:
        read it, never change it (it is rebuilt after any change to the fields).
        """
        return self._indexed()

    def joined(self) -> dict[bytes, bytes]:
        """Every field as lowercase name -> its lines joined by ", " (a snapshot)."""
        return {name: (value if type(value) is bytes else b", ".join(value)) for name, value in self._indexed().items()}

    def add(self, name: bytes, value: bytes) -> None:
        self._fields.append((name.lower(), name, value))
        self._index = self._options = None

    def insert_first(self, name: bytes, value: bytes) -> None:
        self._fields.insert(0, (name.lower(), name, value))
        self._index = self._options = None

    def set(self, name: bytes, value: bytes) -> None:
        """Replace every line of *name* by one line holding *value*."""
        self.remove(name.lower())
        self.add(name, value)

    def remove(self, lower_name: bytes) -> None:
        if lower_name in self._indexed():
            self._fields = [f for f in self._fields if f[0] != lower_name]
            self._index = self._options = None

    def remove_all(self, lower_names: set[bytes] | frozenset[bytes]) -> None:
        if lower_names and self.has_any(frozenset(lower_names) if isinstance(lower_names, set) else lower_names):
            self._fields = [f for f in self._fields if f[0] not in lower_names]
            self._index = self._options = None

    def byte_size(self) -> int:
        """Bytes of names and values together (a cost estimate)."""
        return sum([len(name) + len(value) for _lower, name, value in self._fields])

    def lines(self) -> list[tuple[bytes, bytes, bytes]]:
        """(lowercase name, name, value) triples, in order."""
        return list(self._fields)

    def serialize(self) -> bytes:
        """``Name: value\\r\\n`` for every field, in order."""
        return b"".join([name + b": " + value + b"\r\n" for _lower, name, value in self._fields])


def split_list(value: bytes) -> list[bytes]:
    """Members of a comma-separated list (RFC 9110 5.6.1).

    Commas inside quoted strings do not split; whitespace around members is
    dropped and empty members are ignored, as the list rule requires.
    """
    if b'"' not in value:
        return [m for m in (part.strip(_OWS) for part in value.split(b",")) if m]
    members: list[bytes] = []
    start = 0
    i = 0
    quoted = False
    length = len(value)
    while i < length:
        c = value[i]
        if quoted:
            if c == 0x5C:  # backslash: quoted-pair, skip the next byte
                i += 1
            elif c == 0x22:
                quoted = False
        elif c == 0x22:
            quoted = True
        elif c == 0x2C:
            members.append(value[start:i])
            start = i + 1
        i += 1
    members.append(value[start:])
    return [m for m in (part.strip(_OWS) for part in members) if m]


def split_lists(values: Iterable[bytes]) -> list[bytes]:
    """Members of all the lines of a list-based field, in order."""
    members: list[bytes] = []
    for value in values:
        members.extend(split_list(value))
    return members


def unquote(quoted: bytes) -> bytes | None:
    """The content of a quoted-string (``"a\\"b"`` -> ``a"b``), or None if malformed."""
    if len(quoted) < 2 or quoted[:1] != b'"' or quoted[-1:] != b'"':
        return None
    out = bytearray()
    i, end = 1, len(quoted) - 1
    while i < end:
        c = quoted[i]
        if c == 0x5C:
            i += 1
            if i >= end:
                return None
            out.append(quoted[i])
        elif c == 0x22:
            return None  # an unescaped quote inside
        else:
            out.append(c)
        i += 1
    return bytes(out)


class Invalid:
    """Marks a directive whose syntax is broken (``max-age =5``, ``max-age=``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()


def parse_directives(values: Iterable[bytes]) -> list[tuple[bytes, bytes | None | Invalid]]:
    """Cache-Control style directives: ``token [ "=" ( token / quoted-string ) ]``.

    Returns (lowercase name, value) in order; value is None without ``=``,
    the token or unquoted string otherwise, or :data:`INVALID` when the member
    does not follow the grammar (whitespace around ``=``, stray quotes...).
    A member whose name is a token only once whitespace is stripped
    (``max-age =5``) keeps that name with :data:`INVALID`; other broken
    names come back empty.
    """
    result: list[tuple[bytes, bytes | None | Invalid]] = []
    for member in split_lists(values):
        name, eq, raw = member.partition(b"=")
        if not is_token(name):
            stripped = name.strip(_OWS)
            result.append((stripped.lower() if is_token(stripped) else b"", INVALID))
            continue
        name = name.lower()
        if not eq:
            result.append((name, None))
        elif raw[:1] == b'"':
            text = unquote(raw)
            result.append((name, INVALID if text is None else text))
        elif is_token(raw):
            result.append((name, raw))
        else:
            result.append((name, INVALID))
    return result


def connection_options(headers: Headers) -> frozenset[bytes]:
    """Lowercase names listed in Connection (the options it carries); worked out once per message."""
    options = headers._options
    if options is None:
        lines = headers.get_all(b"connection")
        if not lines:
            options = _NO_OPTIONS
        else:
            # Peers send the same one or two values ("keep-alive", "close")
            # on every message: the parsed sets are remembered (bounded).
            options = _connection_options.get(lines)
            if options is None:
                if len(_connection_options) >= 256:
                    _connection_options.clear()
                options = _connection_options[lines] = frozenset(m.lower() for m in split_lists(lines))
        headers._options = options
    return options


_NO_OPTIONS: frozenset[bytes] = frozenset()
_connection_options: dict[tuple[bytes, ...], frozenset[bytes]] = {}


def end_to_end_lines(headers: Headers, also_drop: frozenset[bytes] = frozenset()) -> list[bytes]:
    """``Name: value\\r\\n`` lines of the end-to-end fields, minus *also_drop*, in one pass.

    What a proxy forwards, serialised directly: no intermediate Headers.
    """
    options = connection_options(headers)
    if options or type(also_drop) is not frozenset:
        drop = HOP_BY_HOP | options | also_drop
    else:
        drop = _WITHOUT_HOP_BY_HOP.get(also_drop)
        if drop is None:
            if len(_WITHOUT_HOP_BY_HOP) >= 64:
                _WITHOUT_HOP_BY_HOP.clear()
            drop = _WITHOUT_HOP_BY_HOP[also_drop] = HOP_BY_HOP | also_drop
    return [name + b": " + value + b"\r\n" for lower, name, value in headers._fields if lower not in drop]


# HOP_BY_HOP | also_drop, by also_drop: callers pass the same few constant sets.
_WITHOUT_HOP_BY_HOP: dict[frozenset[bytes], frozenset[bytes]] = {}


def strip_hop_by_hop(headers: Headers) -> Headers:
    """A copy without hop-by-hop fields and the fields Connection names."""
    options = connection_options(headers)
    if not options and not headers.has_any(HOP_BY_HOP):
        return headers.copy()
    drop = HOP_BY_HOP | options
    return Headers.from_lines([f for f in headers.lines() if f[0] not in drop])
