"""Strict, bounded bencode (BEP 3).

Encoding writes dictionary keys sorted, integers canonically. Decoding accepts
only canonical input (no leading zeros, no ``-0``, keys strictly ascending, no
trailing bytes) and is bounded: nesting depth, string length and item count
are capped, so hostile input costs at most linear time and memory. Every
malformed input raises :class:`BencodeError` (a ``ValueError``) and nothing
else.

Types: ``int`` <-> i..e, ``bytes`` <-> n:..., ``list`` <-> l..e, ``dict`` with
``bytes`` keys <-> d..e. ``str`` values are encoded as UTF-8 on encode (a
convenience); decoding always gives bytes.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64
MAX_ITEMS = 1_000_000


class BencodeError(ValueError):
    """Input that is not canonical, bounded bencode."""


def encode(value: Any) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, bool):  # bool is an int subclass: refuse the ambiguity
        raise TypeError("cannot bencode a bool")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        out.append(b"%d:" % len(value))
        out.append(value)
    elif isinstance(value, str):
        _encode(value.encode(), out)
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        items = [(k.encode() if isinstance(k, str) else bytes(k), v) for k, v in value.items()]
        items.sort(key=lambda kv: kv[0])
        for i in range(1, len(items)):
            if items[i][0] == items[i - 1][0]:
                raise ValueError(f"duplicate key {items[i][0]!r}")
        for key, item in items:
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(item, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


class _Decoder:
    def __init__(self, data: bytes, max_depth: int, max_items: int, max_string: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items
        self.max_string = max_string
        # (start, end) of the top-level dictionary's b"info" value, if any.
        self.info_span: tuple[int, int] | None = None

    def fail(self, why: str) -> BencodeError:
        return BencodeError(f"{why} at offset {self.pos}")

    def value(self, depth: int) -> Any:
        self.items_left -= 1
        if self.items_left < 0:
            raise self.fail("too many items")
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise self.fail("truncated")
        c = data[pos]
        if c == 0x69:  # i
            return self.integer()
        if 0x30 <= c <= 0x39:
            return self.string()
        if depth >= self.max_depth:
            raise self.fail("nested too deeply")
        if c == 0x6C:  # l
            self.pos += 1
            result = []
            while True:
                if self.pos >= len(data):
                    raise self.fail("truncated list")
                if data[self.pos] == 0x65:  # e
                    self.pos += 1
                    return result
                result.append(self.value(depth + 1))
        if c == 0x64:  # d
            self.pos += 1
            result = {}
            previous = None
            while True:
                if self.pos >= len(data):
                    raise self.fail("truncated dictionary")
                if data[self.pos] == 0x65:
                    self.pos += 1
                    return result
                if not 0x30 <= data[self.pos] <= 0x39:
                    raise self.fail("dictionary key is not a string")
                key = self.string()
                if previous is not None and key <= previous:
                    raise self.fail("dictionary keys not sorted or repeated")
                previous = key
                start = self.pos
                result[key] = self.value(depth + 1)
                if depth == 0 and key == b"info":
                    self.info_span = (start, self.pos)
        raise self.fail(f"unexpected byte {bytes([c])!r}")

    def integer(self) -> int:
        data = self.data
        end = data.find(b"e", self.pos + 1, self.pos + 1 + 32)
        if end < 0:
            raise self.fail("bad integer")
        text = data[self.pos + 1:end]
        digits = text[1:] if text[:1] == b"-" else text
        if not digits.isdigit() or not digits.isascii():
            raise self.fail("bad integer")
        if (digits[:1] == b"0" and len(digits) > 1) or text == b"-0":
            raise self.fail("non-canonical integer")
        self.pos = end + 1
        return int(text)

    def string(self) -> bytes:
        data = self.data
        colon = data.find(b":", self.pos, self.pos + 12)
        if colon < 0:
            raise self.fail("bad string length")
        text = data[self.pos:colon]
        if not text.isdigit() or not text.isascii() or (text[:1] == b"0" and len(text) > 1):
            raise self.fail("bad string length")
        length = int(text)
        if length > self.max_string:
            raise self.fail("string too long")
        start = colon + 1
        end = start + length
        if end > len(data):
            raise self.fail("truncated string")
        self.pos = end
        return bytes(data[start:end])


def decode(
    data: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
    max_string: int | None = None,
) -> Any:
    """The one value *data* encodes; :class:`BencodeError` otherwise."""
    return decode_with_info_span(data, max_depth=max_depth, max_items=max_items, max_string=max_string)[0]


def decode_with_info_span(
    data: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
    max_string: int | None = None,
) -> tuple[Any, tuple[int, int] | None]:
    """Like :func:`decode`, also giving where the top-level ``info`` value lies.

    The info-hash is the SHA-1 of exactly those bytes as received.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("bencode input must be bytes")
    data = bytes(data)
    decoder = _Decoder(data, max_depth, max_items, len(data) if max_string is None else max_string)
    value = decoder.value(0)
    if decoder.pos != len(data):
        raise decoder.fail("trailing data")
    return value, decoder.info_span


def decode_prefix(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = 10_000) -> tuple[Any, int]:
    """Decode one value at the start of *data*; return it and where it ended.

    BEP 9 metadata messages put raw bytes after a bencoded dictionary.
    """
    decoder = _Decoder(bytes(data), max_depth, max_items, len(data))
    return decoder.value(0), decoder.pos
