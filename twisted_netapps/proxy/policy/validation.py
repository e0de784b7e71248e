"""Validation (RFC 9111 4.3; RFC 9110 8.8, 13): conditional requests both ways.

Outbound (4.3.1): a stale or no-cache stored response is validated with its
ETag in If-None-Match and its Last-Modified in If-Modified-Since. The
client's own preconditions are not forwarded with ours: the client then gets
its answer from the validated stored response (4.3.2), so one origin round
trip serves both.

Inbound (4.3.2): a client's If-None-Match is evaluated with the weak
comparison against the stored ETag; only without If-None-Match does
If-Modified-Since count (If-None-Match wins, RFC 9110 13.2.2), compared with
the stored Last-Modified, else its Date, else the time it was received.
If-Match and If-Unmodified-Since are not a cache's to evaluate: requests
carrying them are forwarded.

Updating (4.3.4, 3.2): a 304 updates the stored responses it selects:
those sharing a strong validator it carries; else, for weak validators, the
most recent matching one. A 304 with no validator at all updates the one
response we validated -- 4.3.4 asks that this response also lack a
validator, which protects a cache holding several variants from an
ambiguous 304; our validation request named exactly one stored response, so
the 304 answers for that one (otherwise every origin that omits ETag from
its 304s would cost a second, unconditional fetch). Every field of the 304
replaces the stored lines of that name, except hop-by-hop and proxy fields
and Content-Length, which describes the stored content, not the 304.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.http.dates import parse_http_date
from twisted_netapps.http.fields import HOP_BY_HOP, Headers, connection_options, split_list
from twisted_netapps.proxy.policy.storability import PROXY_SPECIFIC

_ETAG = re.compile(rb'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')

# Preconditions a cache does not evaluate (RFC 9110 13.2.1): forward these.
ORIGIN_ONLY_PRECONDITIONS = frozenset({b"if-match", b"if-unmodified-since"})
CLIENT_VALIDATORS = frozenset({b"if-none-match", b"if-modified-since"})
_NOT_UPDATED = frozenset(HOP_BY_HOP | PROXY_SPECIFIC | {b"content-length"})


@dataclass(frozen=True, slots=True)
class EntityTag:
    weak: bool
    opaque: bytes  # with its quotes; a malformed tag is kept verbatim


def parse_entity_tag(value: bytes) -> EntityTag:
    match = _ETAG.fullmatch(value)
    if match is None:
        return EntityTag(False, value)
    return EntityTag(match.group(1) is not None, match.group(2))


def parse_entity_tags(value: bytes) -> list[EntityTag] | None:
    """The tags of If-None-Match/If-Match; None stands for ``*``."""
    members = split_list(value)
    if members == [b"*"]:
        return None
    return [parse_entity_tag(m) for m in members]


def weak_match(a: EntityTag, b: EntityTag) -> bool:
    return a.opaque == b.opaque


def strong_match(a: EntityTag, b: EntityTag) -> bool:
    return not a.weak and not b.weak and a.opaque == b.opaque


def client_not_modified(request_headers: Headers, stored_headers: Headers, stored_date: float) -> bool:
    """True when a GET/HEAD's own validators match the stored response (answer 304)."""
    if_none_match = request_headers.get(b"if-none-match")
    if if_none_match is not None:
        tags = parse_entity_tags(if_none_match)
        if tags is None:
            return True
        stored = stored_headers.get(b"etag")
        if stored is None:
            return False
        stored_tag = parse_entity_tag(stored)
        return any(weak_match(tag, stored_tag) for tag in tags)
    since = parse_http_date(request_headers.get(b"if-modified-since"), stored_date)
    if since is None:
        return False
    last_modified = parse_http_date(stored_headers.get(b"last-modified"), stored_date)
    return (stored_date if last_modified is None else last_modified) <= since


def validation_fields(stored_headers: Headers) -> list[tuple[bytes, bytes]]:
    """Precondition fields for a request validating *stored_headers* (4.3.1)."""
    fields = []
    etag = stored_headers.get(b"etag")
    if etag is not None:
        fields.append((b"If-None-Match", etag))
    last_modified = stored_headers.get(b"last-modified")
    if last_modified is not None and parse_http_date(last_modified) is not None:
        fields.append((b"If-Modified-Since", last_modified))
    return fields


def has_validator(headers: Headers) -> bool:
    return b"etag" in headers or b"last-modified" in headers


def selects(stored_headers: Headers, response_headers: Headers, *, validated: bool) -> bool:
    """Does a 304 (*response_headers*) update this stored response (4.3.4)?

    *validated* says this is the stored response our request validated.
    """
    new_etag = response_headers.get(b"etag")
    if new_etag is not None:
        stored_etag = stored_headers.get(b"etag")
        if stored_etag is None:
            return False
        new, old = parse_entity_tag(new_etag), parse_entity_tag(stored_etag)
        return strong_match(new, old) if not new.weak else weak_match(new, old)
    new_last_modified = response_headers.get(b"last-modified")
    if new_last_modified is not None:
        return stored_headers.get(b"last-modified") == new_last_modified
    return validated or not has_validator(stored_headers)


def freshen_fields(stored_headers: Headers, new_headers: Headers) -> Headers:
    """Stored fields updated from a 304 or HEAD response (3.2)."""
    excluded = _NOT_UPDATED | connection_options(new_headers)
    incoming = [t for t in new_headers.lines() if t[0] not in excluded]
    replaced = {lower for lower, _n, _v in incoming}
    kept = [t for t in stored_headers.lines() if t[0] not in replaced]
    return Headers.from_lines(kept + incoming)


def head_matches(stored_headers: Headers, stored_length: int, head_headers: Headers) -> bool:
    """May a 200 to HEAD update the stored GET response (4.3.5)? Else it is stale."""
    for name in (b"etag", b"last-modified"):
        received = head_headers.get(name)
        if received is not None and received != stored_headers.get(name):
            return False
    length = head_headers.get(b"content-length")
    return length is None or length == str(stored_length).encode()
