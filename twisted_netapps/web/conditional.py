"""Conditional requests (RFC 9110 section 13) as pure functions over header values.

:func:`evaluate_preconditions` applies the order of RFC 9110 13.2.2:
If-Match, else If-Unmodified-Since (412 when false); then If-None-Match
(304 for GET/HEAD, 412 otherwise), else If-Modified-Since for GET/HEAD (304).
:func:`if_range_allows` decides whether a Range is honoured. The choices made
where the RFC leaves room:

- an If-Modified-Since date later than our clock is ignored (the client's
  clock is off; the date cannot have come from us), as is any date that is
  not exactly an HTTP-date;
- an If-Range date matches only a Last-Modified equal to it that is at least
  one second old (a Last-Modified in the current second is weak, 8.8.2.2);
- list members that are not entity-tags match nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.http.dates import parse_http_date

_ENTITY_TAG = re.compile(rb'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|\Z)')


@dataclass(frozen=True, slots=True)
class Validators:
    """What the selected representation can be compared with."""

    etag: bytes | None  # b'"..."' (strong) or b'W/"..."'
    last_modified: int | None  # seconds since the epoch
    exists: bool = True


def parse_entity_tags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """[(weak, opaque-tag)] from an If-Match/If-None-Match value; None for ``*``."""
    if value.strip(b" \t") == b"*":
        return None
    tags = []
    pos = 0
    while pos < len(value):
        m = _ENTITY_TAG.match(value, pos)
        if m is None:
            # Skip a malformed member up to the next comma; it matches nothing.
            comma = value.find(b",", pos)
            if comma < 0:
                break
            pos = comma + 1
            continue
        tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return tags


def _split_etag(etag: bytes) -> tuple[bool, bytes]:
    return (True, etag[2:]) if etag.startswith(b"W/") else (False, etag)


def strong_match(value: bytes, etag: bytes | None) -> bool:
    """If-Match semantics: some listed tag equals *etag*, both strong (13.1.1);
    ``*`` matches any current representation (the caller checks it exists)."""
    tags = parse_entity_tags(value)
    if tags is None:
        return True
    if etag is None:
        return False
    weak, opaque = _split_etag(etag)
    return not weak and any(not w and t == opaque for w, t in tags)


def weak_match(value: bytes, etag: bytes | None) -> bool:
    """If-None-Match semantics: some listed tag's opaque part equals *etag*'s (13.1.2)."""
    tags = parse_entity_tags(value)
    if tags is None:
        return True
    if etag is None:
        return False
    opaque = _split_etag(etag)[1]
    return any(t == opaque for _w, t in tags)


def evaluate_preconditions(method: str, headers: dict[bytes, bytes], v: Validators, now: float) -> int | None:
    """412, 304, or None (go on) for a request whose response would otherwise be 2xx."""
    if_match = headers.get(b"if-match")
    if if_match is not None:
        if not v.exists or not strong_match(if_match, v.etag):
            return 412
    else:
        value = headers.get(b"if-unmodified-since")
        if value is not None and v.exists and v.last_modified is not None:
            date = parse_http_date(value, now)
            if date is not None and v.last_modified > date:
                return 412
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        if v.exists and weak_match(if_none_match, v.etag):
            return 304 if safe else 412
    elif safe:
        value = headers.get(b"if-modified-since")
        if value is not None and v.exists and v.last_modified is not None:
            date = parse_http_date(value, now)
            if date is not None and date <= now and v.last_modified <= date:
                return 304
    return None


def if_range_allows(value: bytes | None, v: Validators, now: float) -> bool:
    """Whether a Range may be honoured given the request's If-Range (13.1.5)."""
    if value is None:
        return True
    value = value.strip(b" \t")
    if value.startswith((b'"', b"W/")):
        if v.etag is None or v.etag.startswith(b"W/"):
            return False
        return value == v.etag
    date = parse_http_date(value, now)
    return date is not None and v.last_modified is not None and date == v.last_modified and now - v.last_modified >= 1
