"""Byte ranges (RFC 9110 section 14) as pure functions: parse, select, lay out.

:func:`select_ranges` returns what a GET with a Range field gets:

- ``None``: ignore the Range and send the whole representation (200): the
  unit is not ``bytes``, the syntax is invalid (a last-pos before its
  first-pos included), there are more than *max_ranges* ranges, or the
  representation is empty (no byte range of it can be written);
- ``[]``: none of the ranges is satisfiable: 416 with ``Content-Range: bytes */len``;
- otherwise (first, last) pairs, inclusive, clamped to the length. Overlapping
  or adjacent ranges are coalesced (sorted) so no byte is sent twice; ranges
  that do not touch keep the client's order (14.2's SHOULD, taken as written).

:func:`multipart_layout` computes the exact ``multipart/byteranges`` body
(RFC 9110 14.6) so Content-Length is known before the first byte is sent.
"""

from __future__ import annotations

import re

_RANGE_SPEC = re.compile(rb"[ \t]*(?:(\d{1,18})-(\d{0,18})|-(\d{1,18}))[ \t]*\Z")


def parse_byte_ranges(value: bytes) -> list[tuple[int | None, int | None]] | None:
    """[(first, last)] with None for absent parts (``-N`` is (None, N)); None if invalid."""
    unit, sep, specs = value.partition(b"=")
    if not sep or unit.strip(b" \t").lower() != b"bytes":
        return None
    result: list[tuple[int | None, int | None]] = []
    for spec in specs.split(b","):
        if not spec.strip(b" \t"):
            continue  # RFC 9110 5.6.1: empty list elements are ignored
        m = _RANGE_SPEC.match(spec)
        if m is None:
            return None
        first, last, suffix = m.groups()
        if suffix is not None:
            result.append((None, int(suffix)))
        else:
            first_pos = int(first)
            last_pos = int(last) if last else None
            if last_pos is not None and last_pos < first_pos:
                return None
            result.append((first_pos, last_pos))
    return result or None


def select_ranges(value: bytes, size: int, max_ranges: int) -> list[tuple[int, int]] | None:
    specs = parse_byte_ranges(value)
    if specs is None or len(specs) > max_ranges or size == 0:
        return None
    ranges = []
    for first, last in specs:
        if first is None:  # suffix: the last N bytes
            if last == 0:
                continue
            ranges.append((max(0, size - last), size - 1))
        elif first < size:
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    if len(ranges) > 1:
        ordered = sorted(ranges)
        if any(b[0] <= a[1] + 1 for a, b in zip(ordered, ordered[1:])):
            merged = [ordered[0]]
            for first, last in ordered[1:]:
                if first <= merged[-1][1] + 1:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], last))
                else:
                    merged.append((first, last))
            ranges = merged
    return ranges


def content_range(first: int, last: int, size: int) -> bytes:
    return b"bytes %d-%d/%d" % (first, last, size)


def multipart_layout(
    ranges: list[tuple[int, int]], size: int, content_type: bytes, boundary: bytes
) -> tuple[list[tuple[bytes, int, int]], bytes, int]:
    """([(part head, first, last)], closing delimiter, total body length)."""
    parts = []
    total = 0
    for i, (first, last) in enumerate(ranges):
        head = (
            (b"\r\n" if i else b"") + b"--" + boundary + b"\r\n"
            + b"Content-Type: " + content_type + b"\r\n"
            + b"Content-Range: " + content_range(first, last, size) + b"\r\n\r\n"
        )
        parts.append((head, first, last))
        total += len(head) + last - first + 1
    closing = b"\r\n--" + boundary + b"--\r\n"
    return parts, closing, total + len(closing)
