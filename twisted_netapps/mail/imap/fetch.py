"""FETCH responses (RFC 3501 7.4.2), built from the stored bytes.

Partial fetches (``BODY[]<o.n>``) are sliced and answered as ``BODY[]<o>``;
headers (``BODY[HEADER]``, ``HEADER.FIELDS``, ``RFC822.HEADER``) are the
stored octets, duplicates and folding kept; ENVELOPE and BODYSTRUCTURE come
from :mod:`~twisted_netapps.mail.imap.structure`. Message files are read in
the thread pool, a bounded batch at a time, and each batch is written before
the next is read, waiting while the client is slow to take it (the
transport pauses us as a producer). No Twisted here: the caller passes
``run_blocking`` and the output.
"""

from __future__ import annotations

import time

from twisted_netapps.mail.imap.fetchspec import FetchItem
from twisted_netapps.mail.imap.mailbox import StoredMessage
from twisted_netapps.mail.imap.mime import MimePart, section
from twisted_netapps.mail.imap.structure import body_structure, envelope, serialize
from twisted_netapps.mail.imap.syntax import flag_list

BATCH_MESSAGES = 100
BATCH_BYTES = 1024 * 1024
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Loaded:
    """What one message's answer needs from the disk, read in a thread."""

    def __init__(self, message: StoredMessage, items: tuple[FetchItem, ...]) -> None:
        self.message = message
        kinds = {i.kind for i in items}
        self.mime: MimePart | None = message.mime if any(i.needs_content for i in items) else None
        self.mtime = message.mtime() if "INTERNALDATE" in kinds else 0.0
        self.size = message.size() if "RFC822.SIZE" in kinds else 0


def load_batch(messages: list[StoredMessage], items: tuple[FetchItem, ...]) -> list[Loaded]:
    """Load messages from the front of *messages* up to the batch bounds (blocking)."""
    out: list[Loaded] = []
    total = 0
    for message in messages:
        loaded = Loaded(message, items)
        out.append(loaded)
        total += len(loaded.mime.raw) if loaded.mime is not None else 0
        if len(out) >= BATCH_MESSAGES or total >= BATCH_BYTES:
            break
    return out


def internal_date(mtime: float) -> bytes:
    t = time.gmtime(mtime)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday, _MONTHS[t.tm_mon - 1].encode(), t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


def render(loaded: Loaded, items: tuple[FetchItem, ...], add_flags: bool) -> list[bytes]:
    """``* <seq> FETCH (...)`` for one message, as chunks (big literals are not copied)."""
    message = loaded.message
    chunks: list[bytes] = [b"* %d FETCH (" % message.seq]
    first = True
    for item in items:
        if not first:
            chunks.append(b" ")
        first = False
        chunks.extend(_item(loaded, item))
    if add_flags:
        chunks.append(b" FLAGS " + flag_list(message.flags()))
    chunks.append(b")\r\n")
    return chunks


def _literal(label: bytes, data: bytes, partial: tuple[int, int] | None = None) -> list[bytes]:
    if partial is not None:
        start, length = partial
        data = data[start: start + length]
        label += b"<%d>" % start
    return [label + b" {%d}\r\n" % len(data), data]


def _item(loaded: Loaded, item: FetchItem) -> list[bytes]:
    message, kind, mime = loaded.message, item.kind, loaded.mime
    if kind == "UID":
        return [b"UID %d" % message.uid]
    if kind == "FLAGS":
        return [b"FLAGS " + flag_list(message.flags())]
    if kind == "INTERNALDATE":
        return [b"INTERNALDATE " + internal_date(loaded.mtime)]
    if kind == "RFC822.SIZE":
        return [b"RFC822.SIZE %d" % loaded.size]
    if kind == "ENVELOPE":
        return [b"ENVELOPE " + serialize([envelope(mime)])]
    if kind == "BODYSTRUCTURE":
        return [b"BODYSTRUCTURE " + serialize([body_structure(mime, True)])]
    if kind == "BODY":
        return [b"BODY " + serialize([body_structure(mime, False)])]
    if kind == "RFC822":
        return _literal(b"RFC822", mime.raw)
    if kind == "RFC822.HEADER":
        return _literal(b"RFC822.HEADER", mime.header)
    if kind == "RFC822.TEXT":
        return _literal(b"RFC822.TEXT", mime.body)
    return _literal(item.label, section_data(mime, item), item.partial)


def section_data(root: MimePart, item: FetchItem) -> bytes:
    """The octets of ``BODY[<part>.<text>]``; empty for a part that does not exist."""
    numbers = list(item.part)
    try:
        target = section(root, numbers)
    except IndexError:
        return b""
    if item.text is None:
        if not numbers:
            return root.raw
        return target.body
    if item.text == "MIME":
        return target.header
    entity = _entity(target, numbers)
    if item.text == "TEXT":
        return entity.body
    if item.text == "HEADER":
        return entity.header
    names = [f.decode("ascii", "replace") for f in item.fields]
    return entity.header_fields(names, item.text == "HEADER.FIELDS.NOT")


def _entity(target: MimePart, numbers: list[int]) -> MimePart:
    """The message whose HEADER/TEXT is meant: the root, or the one inside a message/rfc822 part."""
    if numbers and target.content_type() == ("message", "rfc822"):
        return target.embedded()
    return target
