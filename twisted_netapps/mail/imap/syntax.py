"""IMAP command syntax (RFC 3501 section 9): tokens of one framed command, and reply strings.

:class:`Reader` walks one command, already framed by the core (its line
segments joined, each literal's octets kept aside by the offset of its
``{n}`` marker), and reads the grammar's pieces: atoms, quoted strings,
literals, astrings, parenthesised lists, sequence sets. Anything that does
not fit raises :class:`ParseError`, which the core answers with a tagged
``BAD``: never an exception out of the core, whatever the bytes (8-bit,
NUL, unbalanced parentheses, absurd numbers). No Twisted here.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_NUMBER = 0xFFFFFFFF  # number / nz-number are 32-bit (RFC 3501 9)
MAX_SET_RANGES = 10_000
MAX_NESTING = 50

# atom-char: any 7-bit CHAR except atom-specials ( ) { SP CTL % * " \ ] (RFC 3501 9).
_ATOM = frozenset(set(range(0x21, 0x7F)) - set(b'(){%*"\\]'))
_ASTRING = _ATOM | {ord("]")}
_LIST_MAILBOX = _ASTRING | {ord("%"), ord("*")}
_TAG = _ATOM - {ord("+")}
# What SEARCH and the other token-tree arguments accept as a bare word.
_WORD = frozenset(set(range(0x21, 0x7F)) - set(b'()"{'))


class ParseError(ValueError):
    """A malformed command: answered with a tagged BAD (*code* is a response code, e.g. b"TOOBIG")."""

    def __init__(self, message: str, code: bytes | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LiteralValue:
    """One literal of a command: its octets, and whether it was sent as literal8 (``~{n}``)."""

    data: bytes
    end: int  # offset in the command text just after the marker
    binary: bool = False


def is_tag(tag: bytes) -> bool:
    return bool(tag) and all(c in _TAG for c in tag)


class Reader:
    """Cursor over one command's text and literals."""

    def __init__(self, text: bytes, literals: dict[int, LiteralValue] | None = None, pos: int = 0) -> None:
        self.text = text
        self.literals = literals or {}
        self.pos = pos

    # ------------------------------------------------------------ basics

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> int | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def startswith(self, prefix: bytes) -> bool:
        return self.text[self.pos: self.pos + len(prefix)].upper() == prefix.upper()

    def skip(self, prefix: bytes) -> bool:
        """Consume *prefix* (case-insensitive) if it is next."""
        if self.startswith(prefix):
            self.pos += len(prefix)
            return True
        return False

    def expect(self, prefix: bytes, what: str = "") -> None:
        if not self.skip(prefix):
            raise ParseError(f"expected {what or prefix.decode('ascii')!s}")

    def space(self) -> None:
        self.expect(b" ", "a space")

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected text after the arguments")

    def _run(self, allowed: frozenset) -> bytes:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] in allowed and self.pos not in self.literals:
            self.pos += 1
        return text[start: self.pos]

    # ------------------------------------------------------------ strings

    def atom(self) -> bytes:
        value = self._run(_ATOM)
        if not value:
            raise ParseError("expected an atom")
        return value

    def literal(self) -> LiteralValue | None:
        lit = self.literals.get(self.pos)
        if lit is not None:
            self.pos = lit.end
        return lit

    def quoted(self) -> bytes:
        self.expect(b'"', "a quoted string")
        out = bytearray()
        text = self.text
        while True:
            if self.pos >= len(text):
                raise ParseError("unterminated quoted string")
            c = text[self.pos]
            self.pos += 1
            if c == 0x22:  # '"'
                return bytes(out)
            if c == 0x5C:  # '\\'
                if self.pos >= len(text) or text[self.pos] not in b'"\\':
                    raise ParseError("bad escape in a quoted string")
                c = text[self.pos]
                self.pos += 1
            elif c == 0:
                raise ParseError("NUL in a quoted string")
            # 8-bit bytes are accepted: UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855),
            # and what MUAs send in SEARCH strings anyway.
            out.append(c)

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        lit = self.literal()
        if lit is None:
            raise ParseError("expected a string")
        return lit.data

    def astring(self) -> bytes:
        if self.peek() == 0x22 or self.pos in self.literals:
            return self.string()
        value = self._run(_ASTRING)
        if not value:
            raise ParseError("expected an atom or a string")
        return value

    def nstring(self) -> bytes | None:
        if self.skip(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        if self.peek() == 0x22 or self.pos in self.literals:
            return self.string()
        value = self._run(_LIST_MAILBOX)
        if not value:
            raise ParseError("expected a mailbox pattern")
        return value

    # ------------------------------------------------------------ numbers and sets

    def number(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and 0x30 <= self.text[self.pos] <= 0x39:
            self.pos += 1
        digits = self.text[start: self.pos]
        if not digits or len(digits) > 10 or int(digits) > MAX_NUMBER:
            raise ParseError("expected a 32-bit number")
        return int(digits)

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise ParseError("expected a non-zero number")
        return value

    def seq_set(self) -> "SeqSet":
        ranges: list[tuple[int | None, int | None]] = []
        while True:
            lo = self._seq_number()
            hi = lo
            if self.skip(b":"):
                hi = self._seq_number()
            ranges.append((lo, hi))
            if len(ranges) > MAX_SET_RANGES:
                raise ParseError("sequence set too long")
            if not self.skip(b","):
                return SeqSet(tuple(ranges))

    def _seq_number(self) -> int | None:
        if self.skip(b"*"):
            return None
        return self.nz_number()

    # ------------------------------------------------------------ lists

    def paren_list(self, item, allow_empty: bool = True) -> list:
        """``(item SP item ...)``."""
        self.expect(b"(", "(")
        items = []
        if self.skip(b")"):
            if not allow_empty:
                raise ParseError("empty list")
            return items
        while True:
            items.append(item())
            if self.skip(b")"):
                return items
            self.space()

    def flag(self) -> bytes:
        if self.skip(b"\\"):
            if self.skip(b"*"):
                return b"\\*"
            return b"\\" + self.atom()
        return self.atom()

    def flag_list(self) -> list[bytes]:
        """``(flag ...)``, or (STORE's leniency, as Dovecot's) flags without parentheses."""
        if self.peek() == 0x28:
            return self.paren_list(self.flag)
        flags = [self.flag()]
        while self.skip(b" "):
            flags.append(self.flag())
        return flags

    def token_tree(self, depth: int = 0) -> list:
        """Words, strings and nested parenthesised lists up to the end (SEARCH keys)."""
        if depth > MAX_NESTING:
            raise ParseError("nested too deeply")
        items: list = []
        while not self.at_end():
            c = self.peek()
            if c == 0x29:  # ')'
                if depth == 0:
                    raise ParseError("unbalanced parentheses")
                return items
            if c == 0x28:
                self.pos += 1
                items.append(self.token_tree(depth + 1))
                self.expect(b")", ")")
            elif c == 0x22 or self.pos in self.literals:
                items.append(self.string())
            else:
                word = self._run(_WORD)
                if not word:
                    raise ParseError("unexpected character")
                items.append(word)
            if self.at_end() or self.peek() == 0x29:
                continue
            self.space()
        if depth:
            raise ParseError("unbalanced parentheses")
        return items


@dataclass(frozen=True)
class SeqSet:
    """A sequence set; ``None`` stands for ``*`` (the largest number in use)."""

    ranges: tuple[tuple[int | None, int | None], ...]

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """``(low, high)`` pairs with ``*`` replaced by *largest* (ranges may be written high:low)."""
        out = []
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            out.append((min(a, b), max(a, b)))
        return out

    def uses_star(self) -> bool:
        return any(lo is None or hi is None for lo, hi in self.ranges)


def compact_set(numbers) -> bytes:
    """``1:3,7,9:10`` for the given numbers (sorted, duplicates dropped); b"" for none."""
    values = sorted(set(numbers))
    parts: list[bytes] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(b"%d" % values[i] if i == j else b"%d:%d" % (values[i], values[j]))
        i = j + 1
    return b",".join(parts)


# ------------------------------------------------------------ reply strings


def quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(value: bytes, allow_8bit: bool = False) -> bytes:
    """A quoted string, or a literal when the value cannot be quoted."""
    if b"\r" in value or b"\n" in value or b"\0" in value or len(value) > 1000 or (
        not allow_8bit and any(c > 0x7E for c in value)
    ):
        return b"{%d}\r\n" % len(value) + value
    return quoted(value)


def astring(value: bytes) -> bytes:
    """An atom when the value is one (field names echoed as sent), else a string."""
    if value and all(c in _ASTRING for c in value):
        return value
    return string(value)


def flag_list(flags) -> bytes:
    return b"(" + b" ".join(f.encode("ascii") if isinstance(f, str) else f for f in flags) + b")"
