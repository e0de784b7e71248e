"""A stored response: what is kept about it, and its on-disk metadata format.

Small entries live in segment records (see :mod:`segments`); large ones are
two files named by a random id: ``<id>.body`` (the content, byte for byte)
and ``<id>.meta``. The metadata has the same form in both::

    NAPC1 <crc32 of the JSON, 8 hex digits>\\n
    {"key": ..., "status": ..., "headers": [[name, value], ...], ...}

Bytes are carried through JSON as Latin-1 text (a bijection), so obs-text in
a header survives. The metadata records the body's length and CRC-32: a
body that does not match, or metadata that does not parse or check, is a
corrupt entry -- removed, never served.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from twisted_netapps.http.fields import Headers
from twisted_netapps.proxy.policy.directives import ResponseDirectives, parse_response_directives
from twisted_netapps.proxy.policy.freshness import (
    DEFAULT_HEURISTIC,
    Freshness,
    HeuristicRule,
    compute_freshness,
    date_value,
)

MAGIC = b"NAPC1 "


class CorruptEntry(Exception):
    """An entry's files are unreadable, inconsistent or fail their checksum."""


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _bytes(value: str) -> bytes:
    return value.encode("latin-1")


@dataclass(eq=False)
class Entry:
    id: str
    key: bytes  # the effective request URI
    vary: tuple[bytes, ...]  # lowercase names Vary nominated
    vary_values: tuple[bytes | None, ...]  # their normalised values in the storing request
    status: int
    reason: bytes
    headers: Headers  # as stored: hop-by-hop and unstorable fields removed
    request_time: float
    response_time: float
    body_length: int = 0
    body_crc: int = 0
    segment: int | None = None  # small entries: the segment holding the body (else files of their own)
    offset: int = 0  # where the body starts in that segment
    record_size: int = 0  # bytes the entry's record takes in its segment
    committed: bool = False  # durably on disk (its segment batch synced, or body fsynced and metadata renamed in)
    verified: bool = True  # body checked against its CRC (entries loaded at start: not yet)
    must_validate: bool = False  # e.g. a HEAD response disagreed with it (RFC 9111 4.3.5)
    directives: ResponseDirectives = field(default=None, repr=False)
    freshness: Freshness = field(default=None, repr=False)
    date: float = 0.0
    prepared: dict = field(default_factory=dict, repr=False)  # ready-made response heads
    prepared_second: int = -1

    def refresh(self, heuristic: HeuristicRule = DEFAULT_HEURISTIC,
                directives: ResponseDirectives | None = None) -> None:
        """Recompute what derives from the headers and times (after load or update).

        *directives*: the Cache-Control of these headers, when the caller
        parsed it already.
        """
        self.directives = parse_response_directives(self.headers) if directives is None else directives
        self.freshness = compute_freshness(
            self.status, self.headers, self.directives, self.request_time, self.response_time, heuristic=heuristic
        )
        self.date = date_value(self.headers, self.response_time)
        self.prepared = {}
        self.prepared_second = -1

    @property
    def size(self) -> int:
        """What the entry costs the store: its content plus a rough metadata size."""
        return self.body_length + 512 + sum(len(n) + len(v) for n, v in self.headers)

    def to_meta(self) -> bytes:
        payload = json.dumps(
            {
                "key": _text(self.key),
                "vary": [_text(n) for n in self.vary],
                "vary_values": [None if v is None else _text(v) for v in self.vary_values],
                "status": self.status,
                "reason": _text(self.reason),
                "headers": [[_text(n), _text(v)] for n, v in self.headers],
                "request_time": self.request_time,
                "response_time": self.response_time,
                "body_length": self.body_length,
                "body_crc": self.body_crc,
            },
            separators=(",", ":"),
        ).encode("ascii")
        return MAGIC + b"%08x\n" % zlib.crc32(payload) + payload

    @classmethod
    def from_meta(cls, entry_id: str, data: bytes, heuristic: HeuristicRule = DEFAULT_HEURISTIC) -> "Entry":
        first, newline, payload = data.partition(b"\n")
        if not newline or not first.startswith(MAGIC):
            raise CorruptEntry(f"{entry_id}: not a cache metadata file")
        try:
            if int(first[len(MAGIC):], 16) != zlib.crc32(payload):
                raise CorruptEntry(f"{entry_id}: metadata checksum mismatch")
            meta = json.loads(payload)
            entry = cls(
                id=entry_id,
                key=_bytes(meta["key"]),
                vary=tuple(_bytes(n) for n in meta["vary"]),
                vary_values=tuple(None if v is None else _bytes(v) for v in meta["vary_values"]),
                status=int(meta["status"]),
                reason=_bytes(meta["reason"]),
                headers=Headers((_bytes(n), _bytes(v)) for n, v in meta["headers"]),
                request_time=float(meta["request_time"]),
                response_time=float(meta["response_time"]),
                body_length=int(meta["body_length"]),
                body_crc=int(meta["body_crc"]),
                committed=True,
                verified=False,
            )
        except (ValueError, KeyError, TypeError, UnicodeError) as e:
            raise CorruptEntry(f"{entry_id}: malformed metadata ({e})") from None
        if len(entry.vary) != len(entry.vary_values) or entry.body_length < 0 or not 100 <= entry.status <= 999:
            raise CorruptEntry(f"{entry_id}: inconsistent metadata")
        entry.refresh(heuristic)
        return entry
