"""Byte ranges served from a stored complete response (RFC 9110 14).

Only a single range is served as 206; several ranges, or anything we cannot
parse, get the whole 200 (a server may always ignore Range, 14.2). A range
that starts past the end gets 416. If-Range must match the stored response
exactly -- a strong ETag, or the Last-Modified date -- otherwise the whole
response is sent (13.1.5).
"""

from __future__ import annotations

import re

from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.validation import parse_entity_tag, strong_match

_SINGLE = re.compile(rb"bytes[ \t]*=[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.I)
UNSATISFIABLE = "unsatisfiable"


def requested_range(request_headers: Headers, stored_headers: Headers, length: int):
    """(first, last) inclusive, None for the whole response, or UNSATISFIABLE."""
    value = request_headers.get(b"range")
    if value is None:
        return None
    if_range = request_headers.get(b"if-range")
    if if_range is not None and not _if_range_holds(if_range, stored_headers):
        return None
    match = _SINGLE.fullmatch(value)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0:
            return UNSATISFIABLE
        return (max(0, length - suffix), length - 1) if length else UNSATISFIABLE
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid range-spec: ignore Range
    if first >= length:
        return UNSATISFIABLE
    last = int(last_text) if last_text else length - 1
    return first, min(last, length - 1)


def _if_range_holds(if_range: bytes, stored_headers: Headers) -> bool:
    if if_range.startswith(b'"') or if_range.startswith(b"W/"):
        tag = parse_entity_tag(if_range)
        stored = stored_headers.get(b"etag")
        return stored is not None and strong_match(tag, parse_entity_tag(stored))
    return stored_headers.get(b"last-modified") == if_range
