"""ENVELOPE and BODYSTRUCTURE (RFC 3501 7.4.2), built from the stored bytes.

Twisted's versions lower-case every parameter value (attachment names and
boundaries come out wrong), crash on a malformed Content-Type, and cannot
send a header with 8-bit bytes at all (their serialiser encodes str as
ASCII, so one UTF-8 Subject dropped the connection). Here values stay
bytes, exactly as stored; :func:`serialize` sends anything that is not
plain 7-bit text as a literal. No Twisted here.
"""

from __future__ import annotations

import email.utils
import urllib.parse
from email.message import Message

from twisted_netapps.mail.imap.mime import MimePart, header_lines

MAX_STRUCTURE_DEPTH = 20


class Atom(bytes):
    """Sent as is (NIL, numbers are handled separately)."""


def serialize(items) -> bytes:
    """IMAP s-expression for nested lists of bytes / str / int / None / :class:`Atom`."""
    out = []
    for item in items:
        if item is None:
            out.append(b"NIL")
        elif isinstance(item, Atom):
            out.append(bytes(item))
        elif isinstance(item, bool):
            raise TypeError("no booleans in IMAP")
        elif isinstance(item, int):
            out.append(b"%d" % item)
        elif isinstance(item, (bytes, str)):
            out.append(_string(item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item))
        else:
            out.append(b"(" + serialize(item) + b")")
    return b" ".join(out)


def _string(value: bytes) -> bytes:
    if len(value) > 1000 or any(c < 0x20 or c > 0x7E for c in value):
        return b"{%d}\r\n" % len(value) + value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _raw(value: str) -> bytes:
    """A header value from the email package back to its stored bytes."""
    return value.encode("utf-8", "surrogateescape")


def header_value(part: MimePart, name: str) -> bytes | None:
    """The first *name* field's value, unfolded, as stored (None if absent)."""
    for field, raw in header_lines(part.header):
        if field == name:
            value = raw.split(b":", 1)[1]
            value = value.replace(b"\r\n", b"").replace(b"\n", b"")
            return value.strip(b" \t")
    return None


def _addresses(part: MimePart, name: str):
    value = header_value(part, name)
    if value is None:
        return None
    text = value.decode("ascii", "surrogateescape")
    result = []
    for display, address in email.utils.getaddresses([text]):
        if not address and not display:
            continue
        mailbox, _, host = address.rpartition("@") if "@" in address else (address, "", "")
        result.append([_raw(display) or None, None, _raw(mailbox) or None, _raw(host) or None])
    return result or None


def envelope(part: MimePart) -> list:
    """The ENVELOPE of the message *part* (its own header)."""
    sender_from = _addresses(part, "from")
    return [
        header_value(part, "date"),
        header_value(part, "subject"),
        sender_from,
        _addresses(part, "sender") or sender_from,
        _addresses(part, "reply-to") or sender_from,
        _addresses(part, "to"),
        _addresses(part, "cc"),
        _addresses(part, "bcc"),
        header_value(part, "in-reply-to"),
        header_value(part, "message-id"),
    ]


def _params(message: Message, header: str) -> list | None:
    params = message.get_params(header=header, failobj=None)
    if not params:
        return None
    flat: list = []
    for key, value in params[1:]:  # the first item is the value itself (type or disposition)
        if isinstance(value, tuple):  # RFC 2231: keep the encoded form, it is 7-bit
            charset, language, text = value
            encoded = urllib.parse.quote(text, safe="", encoding="latin-1", errors="replace")
            flat += [_raw(key) + b"*", f"{charset or ''}'{language or ''}'{encoded}".encode("ascii", "replace")]
        else:
            flat += [_raw(key), _raw(value)]
    return flat or None


def _disposition(message: Message):
    value = message.get("content-disposition")
    if value is None:
        return None
    kind = _raw(str(value)).split(b";", 1)[0].strip()
    return [kind or b"attachment", _params(message, "content-disposition")]


def _line_count(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def body_structure(part: MimePart, extended: bool, depth: int = 0) -> list:
    """BODYSTRUCTURE (*extended*) or BODY of *part*."""
    message = part.parsed
    main, sub = part.content_type()
    if part.is_multipart() and depth < MAX_STRUCTURE_DEPTH:
        children = [body_structure(p, extended, depth + 1) for p in part.parts()]
        if not children:  # a multipart without parts: describe it as empty text
            children = [[b"text", b"plain", None, None, None, b"7bit", 0, 0]]
        result = children + [sub.encode("ascii", "replace")]
        if extended:
            result += [_params(message, "content-type"), _disposition(message), None, None]
        return result
    params = _params(message, "content-type")
    if not message.get("content-type"):
        params = [b"charset", b"us-ascii"]
    encoding = message.get("content-transfer-encoding")
    result = [
        main.encode("ascii", "replace"),
        sub.encode("ascii", "replace"),
        params,
        header_value(part, "content-id"),
        header_value(part, "content-description"),
        _raw(str(encoding)).strip() if encoding is not None else b"7bit",
        len(part.body),
    ]
    if (main, sub) == ("message", "rfc822") and depth < MAX_STRUCTURE_DEPTH:
        inner = part.embedded()
        result += [envelope(inner), body_structure(inner, extended, depth + 1), _line_count(part.body)]
    elif main == "text":
        result.append(_line_count(part.body))
    if extended:
        result += [header_value(part, "content-md5"), _disposition(message), None, None]
    return result
