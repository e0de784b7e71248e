"""The 20-message mailbox the mail-client interop tests retrieve (issue 15).

One 5 MB message, one with raw UTF-8 header fields (no RFC 2047), one
multipart with a binary attachment, and 17 ordinary ones (some with lines
starting with a dot, which POP3 must dot-stuff). Every message is stored as
the Maildir store keeps it (CRLF line ends), so the bytes a client gets back
can be compared with :func:`digest`.
"""

from __future__ import annotations

import base64
import hashlib
import random

BIG_SIZE = 5 * 1024 * 1024
UTF8_SUBJECT = "Grüße aus Köln: ½ € ✓"


def _big(rng: random.Random) -> bytes:
    head = (b"From: big@example.test\r\nTo: alice@example.test\r\nSubject: five megabytes\r\n"
            b"Message-ID: <big@example.test>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n")
    words = [b"alpha", b"beta", b"gamma", b"delta", b".dot", b"epsilon"]
    lines = []
    total = len(head)
    while total < BIG_SIZE:
        line = b" ".join(rng.choice(words) for _ in range(12)) + b"\r\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def _utf8() -> bytes:
    return (
        "From: Jörg Müller <joerg@example.test>\r\nTo: Zoë <zoe@example.test>\r\n"
        f"Subject: {UTF8_SUBJECT}\r\nMessage-ID: <utf8@example.test>\r\nDate: Tue, 3 Nov 2026 09:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Schöne Grüße, ça va? — ✓\r\n"
    ).encode("utf-8")


def _multipart(rng: random.Random) -> bytes:
    payload = bytes(rng.randrange(256) for _ in range(30_000))
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (
        b"From: carol@example.test\r\nTo: alice@example.test\r\nSubject: report with attachment\r\n"
        b"Message-ID: <multi@example.test>\r\nDate: Wed, 4 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="=-b1"\r\n\r\n'
        b"--=-b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n.\r\n..two dots\r\n"
        b'--=-b1\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
        b'Content-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + encoded + b"--=-b1--\r\n"
    )


def _plain(i: int) -> bytes:
    body = b"".join(b"line %d of message %d\r\n" % (n, i) for n in range(1, 4 + i))
    if i % 3 == 0:
        body += b".a line starting with a dot\r\n.\r\n"
    return (
        b"From: sender%d@example.test\r\nTo: alice@example.test\r\nSubject: message %d\r\n"
        b"Message-ID: <m%d@example.test>\r\nDate: Thu, 5 Nov 2026 07:%02d:00 +0000\r\n\r\n" % (i, i, i, i) + body
    )


def messages(*, with_utf8: bool = True) -> list[bytes]:
    """The corpus, in delivery order (the 5 MB message third)."""
    rng = random.Random(15)
    out = [_plain(1), _plain(2), _big(rng), _plain(3), _utf8(), _multipart(rng)]
    out += [_plain(i) for i in range(4, 18)]
    assert len(out) == 20
    if not with_utf8:
        out = [m for m in out if b"<utf8@example.test>" not in m]
    return out


def normalised(message: bytes) -> bytes:
    """Line ends as LF: clients that hand mail to an MDA or a Maildir convert CRLF to LF."""
    return message.replace(b"\r\n", b"\n")


def digest(message: bytes) -> str:
    return hashlib.sha256(normalised(message)).hexdigest()


def strip_added_headers(message: bytes, names: tuple[bytes, ...]) -> bytes:
    """*message* without the header fields a client adds on delivery (Received:, X-getmail...)."""
    lines = message.split(b"\n")
    out = []
    in_header = True
    skipping = False
    for line in lines:
        if in_header and line in (b"", b"\r"):
            in_header = False
        if in_header:
            if line[:1] in (b" ", b"\t") and skipping:
                continue
            skipping = any(line.lower().startswith(n.lower() + b":") for n in names)
            if skipping:
                continue
        out.append(line)
    return b"\n".join(out)
