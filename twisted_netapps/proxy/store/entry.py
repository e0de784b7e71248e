"""A stored response: what is kept about it, and its on-disk metadata format.

Small entries live in segment records (see :mod:`segments`); large ones are
two files named by a random id: ``<id>.body`` (the content, byte for byte)
and ``<id>.meta``. The metadata has the same form in both::

    NAPC2 <CRC-32 of the rest, 8 hex digits>
    <key: the effective request URI>
    <status> <reason phrase>
    <request time> <response time> <body length> <body CRC-32>
    <number of Vary names>, then per name: <name> and "+<value>" or "-" (absent)
    <name>: <value>        one line per stored header field

Lines, not JSON: none of these can hold a line feed (the HTTP parser
rejects them), bytes go through unchanged (obs-text included), and it is
several times cheaper to write, once per stored response. The metadata
records the body's length and CRC-32: a body that does not match, or
metadata that does not parse or check, is a corrupt entry -- removed, never
served.
"""

from __future__ import annotations

import zlib
from itertools import chain

from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.directives import ResponseDirectives, parse_response_directives
from twisted_netapps.proxy.policy.freshness import (
    DEFAULT_HEURISTIC,
    Freshness,
    HeuristicRule,
    compute_freshness,
    date_value,
)

MAGIC = b"NAPC2 "


def _flatten(headers: Headers) -> tuple[bytes, ...]:
    """(lowercase name, name, value) of every field, in order, in one tuple."""
    return tuple(chain.from_iterable(headers.lines()))


class CorruptEntry(Exception):
    """An entry's files are unreadable, inconsistent or fail their checksum."""


class Entry:
    """One stored response.

    Long-lived and numerous, so kept lean for the cyclic garbage collector:
    a single tracked object, its header fields held as one flat tuple of
    bytes (lowercase name, name, value, lowercase name, ...: untracked after
    the collector's first look, where a tuple per field would be a dozen
    more objects per stored response for every young collection to walk)
    and turned into :class:`Headers` on demand, its freshness as plain
    numbers.
    """

    __slots__ = (
        "id", "key", "vary", "vary_values", "status", "reason", "flat_fields", "request_time", "response_time",
        "body_length", "body_crc", "segment", "offset", "record_size", "committed", "verified", "must_validate",
        "directives", "date", "lifetime", "initial_age", "fresh_until", "prepared", "prepared_second",
        "fields_size",
    )

    def __init__(self, id: str, key: bytes, vary: tuple, vary_values: tuple, status: int, reason: bytes,
                 headers: Headers, request_time: float, response_time: float, body_length: int = 0,
                 body_crc: int = 0, *, committed: bool = False, verified: bool = True) -> None:
        self.id = id
        self.key = key  # the effective request URI
        self.vary = vary  # lowercase names Vary nominated
        self.vary_values = vary_values  # their normalised values in the storing request
        self.status = status
        self.reason = reason
        self.flat_fields = _flatten(headers)  # as stored: hop-by-hop and unstorable fields removed
        self.request_time = request_time
        self.response_time = response_time
        self.body_length = body_length
        self.body_crc = body_crc
        self.segment: int | None = None  # small entries: the segment holding the body (else files of their own)
        self.offset = 0  # where the body starts in that segment
        self.record_size = 0  # bytes the entry's record takes in its segment
        self.committed = committed  # durable (its segment batch synced, or body fsynced and metadata renamed in)
        self.verified = verified  # body checked against its CRC (large entries loaded at start: not yet)
        self.must_validate = False  # e.g. a HEAD response disagreed with it (RFC 9111 4.3.5)
        self.directives: ResponseDirectives | None = None
        self.date = 0.0
        self.lifetime = 0.0
        self.initial_age = 0.0
        self.fresh_until = 0.0
        self.prepared: dict | None = None  # ready-made response heads (made on first use)
        self.prepared_second = -1
        self.fields_size = 0

    def __repr__(self) -> str:
        return f"Entry({self.id}, {self.key!r}, {self.status})"

    @property
    def headers(self) -> Headers:
        """The stored fields (a fresh :class:`Headers` each time: change it, then assign it back)."""
        flat = self.flat_fields
        return Headers.from_lines(list(zip(flat[0::3], flat[1::3], flat[2::3])))

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self.flat_fields = _flatten(headers)

    @property
    def freshness(self) -> Freshness:
        return Freshness(self.lifetime, self.initial_age, self.response_time)

    def refresh(self, heuristic: HeuristicRule = DEFAULT_HEURISTIC,
                directives: ResponseDirectives | None = None, headers: Headers | None = None) -> None:
        """Recompute what derives from the headers and times (after load or update).

        *directives*: the Cache-Control of these headers, when the caller
        parsed it already; *headers*: the :class:`Headers` the entry's
        fields were just taken from (not changed since), sparing a rebuild.
        """
        if headers is None:
            headers = self.headers
        self.directives = parse_response_directives(headers) if directives is None else directives
        self.date = date_value(headers, self.response_time)
        freshness = compute_freshness(
            self.status, headers, self.directives, self.request_time, self.response_time, heuristic=heuristic,
            date=self.date,
        )
        self.lifetime, self.initial_age = freshness.lifetime, freshness.initial_age
        self.fresh_until = freshness.fresh_until
        self.fields_size = headers.byte_size()
        self.prepared = None
        self.prepared_second = -1

    @property
    def size(self) -> int:
        """What the entry costs the store: its content plus a rough metadata size."""
        return self.body_length + 512 + self.fields_size

    def to_meta(self) -> bytes:
        lines = [
            self.key,
            b"%d %b" % (self.status, self.reason),
            b"%r %r %d %d" % (self.request_time, self.response_time, self.body_length, self.body_crc),
            b"%d" % len(self.vary),
        ]
        for name, value in zip(self.vary, self.vary_values):
            lines.append(name)
            lines.append(b"-" if value is None else b"+" + value)
        flat = self.flat_fields
        lines += [name + b": " + value for name, value in zip(flat[1::3], flat[2::3])]
        payload = b"\n".join(lines)
        return MAGIC + b"%08x\n" % zlib.crc32(payload) + payload

    @classmethod
    def from_meta(cls, entry_id: str, data: bytes, heuristic: HeuristicRule = DEFAULT_HEURISTIC) -> "Entry":
        first, newline, payload = data.partition(b"\n")
        if not newline or not first.startswith(MAGIC):
            raise CorruptEntry(f"{entry_id}: not a cache metadata file")
        try:
            if int(first[len(MAGIC):], 16) != zlib.crc32(payload):
                raise CorruptEntry(f"{entry_id}: metadata checksum mismatch")
            lines = payload.split(b"\n")
            key, status_line, times, count = lines[:4]
            status, _space, reason = status_line.partition(b" ")
            request_time, response_time, body_length, body_crc = times.split(b" ")
            vary_count = int(count)
            vary_lines = lines[4:4 + 2 * vary_count]
            if len(vary_lines) != 2 * vary_count:
                raise ValueError("truncated Vary")
            headers = []
            for line in lines[4 + 2 * vary_count:]:
                name, sep, value = line.partition(b": ")
                if not sep:
                    raise ValueError("malformed field")
                headers.append((name, value))
            entry = cls(
                id=entry_id,
                key=key,
                vary=tuple(vary_lines[0::2]),
                vary_values=tuple(None if v == b"-" else v[1:] for v in vary_lines[1::2]),
                status=int(status),
                reason=reason,
                headers=Headers(headers),
                request_time=float(request_time),
                response_time=float(response_time),
                body_length=int(body_length),
                body_crc=int(body_crc),
                committed=True,
                verified=False,
            )
        except (ValueError, IndexError) as e:
            raise CorruptEntry(f"{entry_id}: malformed metadata ({e})") from None
        if entry.body_length < 0 or not 100 <= entry.status <= 999:
            raise CorruptEntry(f"{entry_id}: inconsistent metadata")
        entry.refresh(heuristic)
        return entry
