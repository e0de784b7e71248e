"""Byte-exact MIME structure for IMAP FETCH (BODY[...], BODYSTRUCTURE, ENVELOPE).

IMAP section numbers and partial fetches address the stored octets, so a part
is a slice of the original message, never a re-serialisation (Python's
``email`` package would refold headers and change sizes). ``email`` is used
only to parse header *values* (Content-Type parameters, addresses).

No Twisted here.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_PARTS = 500  # per message: a bomb of tiny parts gets flattened beyond this
MAX_DEPTH = 20
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including the blank line, body)."""
    if raw.startswith(b"\r\n") or raw.startswith(b"\n"):
        cut = 2 if raw.startswith(b"\r\n") else 1
        return raw[:cut], raw[cut:]
    match = _HEADER_END_RE.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.end()], raw[match.end():]


def header_lines(header: bytes) -> list[tuple[str, bytes]]:
    """``[(lower-case name, raw field bytes incl. folded lines and CRLF)]``."""
    fields: list[tuple[str, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
            continue
        match = _FIELD_NAME_RE.match(line)
        name = match.group(1).decode("ascii").lower() if match else ""
        fields.append((name, line))
    return fields


class MimePart:
    """One MIME entity: the whole message, or a body part / embedded message."""

    def __init__(self, raw: bytes, depth: int = 0, budget: list | None = None) -> None:
        self.raw = raw
        self.header, self.body = split_header(raw)
        self.depth = depth
        self._budget = budget if budget is not None else [MAX_PARTS]
        self._parsed: Message | None = None
        self._parts: list[MimePart] | None = None

    # -------------------------------------------------------------- headers

    @property
    def parsed(self) -> Message:
        if self._parsed is None:
            self._parsed = BytesHeaderParser(policy=compat32).parsebytes(self.header)
        return self._parsed

    def header_fields(self, names: list[str] | None = None, negate: bool = False) -> bytes:
        """Raw header fields (all, or those named / not named) and the blank line."""
        wanted = {n.lower() for n in names or ()}
        out = [
            raw for name, raw in header_lines(self.header)
            if names is None or ((name in wanted) != negate)
        ]
        return b"".join(out) + b"\r\n"

    # -------------------------------------------------------------- body

    def content_type(self) -> tuple[str, str]:
        value = self.parsed.get_content_type()  # defaults to text/plain
        main, _, sub = value.partition("/")
        return main.lower(), sub.lower()

    def is_multipart(self) -> bool:
        return self.content_type()[0] == "multipart" and bool(self.parsed.get_boundary())

    def parts(self) -> list["MimePart"]:
        if self._parts is not None:
            return self._parts
        self._parts = []
        if self.is_multipart() and self.depth < MAX_DEPTH:
            boundary = self.parsed.get_boundary().encode("utf-8", "replace")
            for chunk in split_multipart(self.body, boundary):
                if self._budget[0] <= 0:
                    break
                self._budget[0] -= 1
                self._parts.append(MimePart(chunk, self.depth + 1, self._budget))
        return self._parts

    def embedded(self) -> "MimePart":
        """The message inside a message/rfc822 part."""
        return MimePart(self.body, self.depth + 1, self._budget)


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts of a multipart body (RFC 2046 5.1.1): between delimiter lines, without the CRLF before them."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts = []
    start = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start: match.start()])
        if match.group(1):  # the close delimiter
            start = None
            break
        start = match.end()
    if start is not None:  # no close delimiter: the last part runs to the end
        parts.append(body[start:])
    return parts


def section(root: MimePart, numbers: list[int]) -> MimePart:
    """The part at IMAP section *numbers* (1-based, as in BODY[1.2]).

    Below a message/rfc822 part, numbers address the parts of the embedded message.
    """
    part = root
    for number in numbers:
        if number < 1:
            raise IndexError("section numbers start at 1")
        if part is not root and part.content_type() == ("message", "rfc822"):
            part = part.embedded()
        if part.is_multipart():
            parts = part.parts()
            if number > len(parts):
                raise IndexError(f"no part {number}")
            part = parts[number - 1]
        elif number != 1:
            raise IndexError(f"no part {number}")
    return part
