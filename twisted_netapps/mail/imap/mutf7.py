"""Modified UTF-7 (RFC 3501 5.1.3): how IMAP4rev1 spells non-ASCII mailbox names.

Printable ASCII stands for itself except ``&``, which is written ``&-``; any
other run of characters is UTF-16BE in base64 with ``,`` for ``/``, no
padding, between ``&`` and ``-``. Folders are stored under these names on
disk (as Dovecot and Courier store them), so directories stay ASCII.
No Twisted here (``twisted.mail.imap4`` registers a codec as an import side
effect; the command layer does not import it).
"""

from __future__ import annotations

import base64
import binascii


def encode(name: str) -> bytes:
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode(data: bytes) -> str:
    """The name spelled by *data*; ValueError if it is not valid modified UTF-7."""
    out: list[str] = []
    i = 0
    while i < len(data):
        c = data[i]
        if c < 0x20 or c > 0x7E:
            raise ValueError("8-bit or control byte in a modified UTF-7 name")
        if c != 0x26:  # "&"
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise ValueError("unterminated &-sequence")
        chunk = data[i + 1: end]
        if not chunk:
            out.append("&")
        else:
            padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
            try:
                raw = base64.b64decode(padded, validate=True)
                text = raw.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError("bad base64 in a modified UTF-7 name") from None
            out.append(text)
        i = end + 1
    return "".join(out)
