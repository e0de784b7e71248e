"""FETCH data items (RFC 3501 6.4.5, 9): what the client asked for, and the label of each answer.

``BODY[HEADER.FIELDS (X-TUID)]`` comes back under the same label, field names
spelled exactly as the client sent them: mbsync matches the echo literally
(Twisted answered ``(X-Tuid)``). No Twisted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_netapps.mail.imap.syntax import ParseError, Reader, astring

MAX_SECTION_DEPTH = 20
MAX_FIELDS = 200

SIMPLE = ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
          "RFC822", "RFC822.HEADER", "RFC822.TEXT")
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
# Items whose answer needs the message's content.
NEEDS_CONTENT = {"ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "SECTION"}


@dataclass(frozen=True)
class FetchItem:
    """One data item. ``kind`` is one of :data:`SIMPLE` or ``"SECTION"`` (``BODY[...]``)."""

    kind: str
    part: tuple[int, ...] = ()
    text: str | None = None  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME, or None (whole part)
    fields: tuple[bytes, ...] = ()
    peek: bool = False
    partial: tuple[int, int] | None = None
    label: bytes = b""  # e.g. b"BODY[HEADER.FIELDS (X-TUID)]" (without the <origin>)

    @property
    def sets_seen(self) -> bool:
        """RFC 3501 6.4.5: BODY[...] (not PEEK), RFC822 and RFC822.TEXT set \\Seen."""
        return (self.kind == "SECTION" and not self.peek) or self.kind in ("RFC822", "RFC822.TEXT")

    @property
    def needs_content(self) -> bool:
        return self.kind in NEEDS_CONTENT


def parse_fetch_items(reader: Reader) -> tuple[FetchItem, ...]:
    """``ALL``/``FAST``/``FULL``, one item, or a parenthesised list of items."""
    if reader.peek() == 0x28:
        items = reader.paren_list(lambda: _item(reader), allow_empty=False)
        return tuple(items)
    for name, expansion in MACROS.items():
        if reader.startswith(name.encode()) and _word_ends(reader, len(name)):
            reader.pos += len(name)
            return tuple(FetchItem(kind) for kind in expansion)
    return (_item(reader),)


def _word_ends(reader: Reader, length: int) -> bool:
    following = reader.text[reader.pos + length: reader.pos + length + 1]
    return following in (b"", b" ", b")")


def _item(reader: Reader) -> FetchItem:
    for prefix, peek in ((b"BODY.PEEK[", True), (b"BODY[", False)):
        if reader.startswith(prefix):
            reader.pos += len(prefix) - 1
            return _section(reader, peek)
    word = reader.atom().upper().decode("ascii")
    if word not in SIMPLE:
        raise ParseError(f"unknown FETCH item {word}")
    return FetchItem(word)


def _section(reader: Reader, peek: bool) -> FetchItem:
    reader.expect(b"[")
    part: list[int] = []
    while reader.peek() is not None and 0x30 <= reader.peek() <= 0x39:
        part.append(reader.nz_number())
        if len(part) > MAX_SECTION_DEPTH:
            raise ParseError("section nested too deeply")
        if not reader.skip(b"."):
            break
    spec_label = b".".join(b"%d" % n for n in part)
    text = None
    fields: tuple[bytes, ...] = ()
    if reader.peek() != 0x5D:  # ']'
        if part and reader.text[reader.pos - 1: reader.pos] != b".":
            raise ParseError("bad section")
        for name in ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME"):
            if reader.skip(name.encode()):
                text = name
                break
        else:
            raise ParseError("bad section")
        if text == "MIME" and not part:
            raise ParseError("MIME needs a part number")
        label_text = text.encode()
        if text.startswith("HEADER.FIELDS"):
            reader.space()
            names = reader.paren_list(reader.astring, allow_empty=False)
            if len(names) > MAX_FIELDS:
                raise ParseError("too many header fields")
            fields = tuple(names)
            label_text += b" (" + b" ".join(astring(n) for n in fields) + b")"
        spec_label = spec_label + b"." + label_text if spec_label else label_text
    elif reader.text[reader.pos - 1: reader.pos] == b".":
        raise ParseError("bad section")
    reader.expect(b"]")
    partial = None
    if reader.skip(b"<"):
        start = reader.number()
        reader.expect(b".")
        length = reader.nz_number()
        reader.expect(b">")
        partial = (start, length)
    return FetchItem("SECTION", tuple(part), text, fields, peek, partial, b"BODY[" + spec_label + b"]")
