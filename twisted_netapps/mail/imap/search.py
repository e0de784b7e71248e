"""IMAP SEARCH (RFC 3501 6.4.4): parse the search keys and match messages.

Stock Twisted's SEARCH compares bytes keys with str headers on Python 3 and
fails for FROM/SUBJECT/TEXT..., so the matching is ours. Input is the token
tree of :meth:`twisted_netapps.mail.imap.syntax.Reader.token_tree` (bytes
atoms/strings, nested lists for parentheses); messages are seen through the
small :class:`Searchable` protocol. KEYWORD/UNKEYWORD look the keyword's
Maildir letter up through the folder's keyword map. No Twisted here.
"""

from __future__ import annotations

import datetime
import email.utils
from typing import Callable, Protocol

MAX_DEPTH = 50


class SearchError(ValueError):
    """Malformed search criteria (answered with BAD)."""


class Searchable(Protocol):
    seq: int
    uid: int

    def letters(self) -> str: ...  # Maildir flag letters
    def is_recent(self) -> bool: ...
    def internal_date(self) -> datetime.date: ...
    def header_values(self, name: str) -> list[str]: ...
    def body_text(self) -> str: ...
    def full_text(self) -> str: ...
    def size(self) -> int: ...


Matcher = Callable[[Searchable], bool]

_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_FLAG_KEYS = {
    "ANSWERED": ("R", True), "UNANSWERED": ("R", False),
    "DELETED": ("T", True), "UNDELETED": ("T", False),
    "DRAFT": ("D", True), "UNDRAFT": ("D", False),
    "FLAGGED": ("F", True), "UNFLAGGED": ("F", False),
    "SEEN": ("S", True), "UNSEEN": ("S", False),
}
_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
_KEYWORD_LETTERS = {"$forwarded": "P"}


def _text(token) -> str:
    if isinstance(token, list):
        raise SearchError("expected a string, got a list")
    return token.decode("utf-8", "replace") if isinstance(token, bytes) else str(token)


def parse_date(token) -> datetime.date:
    """RFC 3501 date: ``1-Feb-1994``."""
    text = _text(token)
    try:
        day, month, year = text.split("-")
        return datetime.date(int(year), _MONTHS[month.lower()], int(day))
    except (ValueError, KeyError):
        raise SearchError(f"bad date {text!r}") from None


def parse_set(text: str, largest: int) -> Callable[[int], bool]:
    """A sequence set (``1,3:5,7:*``) as a membership test; ``*`` is *largest*."""
    ranges = []
    for item in text.split(","):
        lo, _, hi = item.partition(":")
        try:
            a = largest if lo == "*" else int(lo)
            b = a if not hi else (largest if hi == "*" else int(hi))
        except ValueError:
            raise SearchError(f"bad sequence set {text!r}") from None
        ranges.append((min(a, b), max(a, b)))
    return lambda n: any(lo <= n <= hi for lo, hi in ranges)


def _is_set(text: str) -> bool:
    return bool(text) and all(c.isdigit() or c in ",:*" for c in text)


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _sent_date(m: Searchable) -> datetime.date | None:
    values = m.header_values("date")
    if not values:
        return None
    try:
        return email.utils.parsedate_to_datetime(values[0]).date()
    except (TypeError, ValueError, IndexError):
        return None


class _Parser:
    def __init__(self, tokens: list, largest_seq: int, largest_uid: int, keyword_letter) -> None:
        self.tokens = list(tokens)
        self.largest_seq = largest_seq
        self.largest_uid = largest_uid
        self.keyword_letter = keyword_letter

    def take(self):
        if not self.tokens:
            raise SearchError("missing search argument")
        return self.tokens.pop(0)

    def all(self, depth: int = 0) -> Matcher:
        matchers = []
        while self.tokens:
            matchers.append(self.key(depth))
        if not matchers:
            raise SearchError("empty search")
        return lambda m: all(f(m) for f in matchers)

    def key(self, depth: int) -> Matcher:
        if depth > MAX_DEPTH:
            raise SearchError("search nested too deeply")
        token = self.take()
        if isinstance(token, list):
            inner = _Parser(token, self.largest_seq, self.largest_uid, self.keyword_letter).all(depth + 1)
            return inner
        word = _text(token)
        name = word.upper()
        if name == "ALL":
            return lambda m: True
        if name in _FLAG_KEYS:
            letter, wanted = _FLAG_KEYS[name]
            return lambda m: (letter in m.letters()) == wanted
        if name == "RECENT":
            return lambda m: m.is_recent()
        if name == "NEW":
            return lambda m: m.is_recent() and "S" not in m.letters()
        if name == "OLD":
            return lambda m: not m.is_recent()
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = _text(self.take())
            letter = _KEYWORD_LETTERS.get(keyword.lower()) or self.keyword_letter(keyword)
            wanted = name == "KEYWORD"
            return lambda m: (letter is not None and letter in m.letters()) == wanted
        if name in _HEADER_KEYS:
            field, needle = _HEADER_KEYS[name], _text(self.take())
            return lambda m: any(_contains(v, needle) for v in m.header_values(field))
        if name == "HEADER":
            field, needle = _text(self.take()).lower(), _text(self.take())
            return lambda m: any(_contains(v, needle) for v in m.header_values(field))
        if name == "BODY":
            needle = _text(self.take())
            return lambda m: _contains(m.body_text(), needle)
        if name == "TEXT":
            needle = _text(self.take())
            return lambda m: _contains(m.full_text(), needle)
        if name in ("BEFORE", "ON", "SINCE"):
            day = parse_date(self.take())
            return _date_matcher(name, day, lambda m: m.internal_date())
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            day = parse_date(self.take())
            return _date_matcher(name[4:], day, _sent_date)
        if name in ("LARGER", "SMALLER"):
            try:
                limit = int(_text(self.take()))
            except ValueError:
                raise SearchError(f"{name} needs a number") from None
            if name == "LARGER":
                return lambda m: m.size() > limit
            return lambda m: m.size() < limit
        if name == "NOT":
            inner = self.key(depth + 1)
            return lambda m: not inner(m)
        if name == "OR":
            left, right = self.key(depth + 1), self.key(depth + 1)
            return lambda m: left(m) or right(m)
        if name == "UID":
            member = parse_set(_text(self.take()), self.largest_uid)
            return lambda m: member(m.uid)
        if _is_set(word):
            member = parse_set(word, self.largest_seq)
            return lambda m: member(m.seq)
        raise SearchError(f"unknown search key {word!r}")


def _date_matcher(relation: str, day: datetime.date, date_of) -> Matcher:
    def match(m: Searchable) -> bool:
        value = date_of(m)
        if value is None:
            return False
        if relation == "BEFORE":
            return value < day
        if relation == "ON":
            return value == day
        return value >= day  # SINCE

    return match


def compile_search(tokens: list, largest_seq: int, largest_uid: int,
                   keyword_letter: Callable[[str], str | None] = lambda keyword: None) -> Matcher:
    """A predicate for the search *tokens*; raises :class:`SearchError`."""
    return _Parser(tokens, largest_seq, largest_uid, keyword_letter).all()
