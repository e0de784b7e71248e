"""Raw DNS header helpers, on bytes: no codec, no Twisted.

These run before (or instead of) dnspython: on the hot path, to find the
question cheaply, and at the protocol boundary, to answer SERVFAIL/FORMERR
to a message the codec could not or should not handle.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">HBBHHHH")  # id, flags1, flags2, qd, an, ns, ar
HEADER_SIZE = 12
MAX_NAME_WIRE = 255

# flags1 bits
QR = 0x80
OPCODE_MASK = 0x78
AA = 0x04
TC = 0x02
RD = 0x01

# rcodes (the 4-bit ones)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


def question_end(message: bytes, offset: int = HEADER_SIZE) -> int | None:
    """Offset just past the first question (name, type, class), or None.

    Only uncompressed names are accepted: a query's first name has nothing
    before it to point at. Bounded by the 255-byte name limit.
    """
    i = offset
    limit = min(len(message), offset + MAX_NAME_WIRE)
    while i < limit:
        n = message[i]
        if n == 0:
            end = i + 5
            return end if end <= len(message) else None
        if n > 63:  # compression pointer or reserved label type
            return None
        i += n + 1
    return None


def is_response(message: bytes) -> bool:
    return len(message) >= 3 and bool(message[2] & QR)


def error_reply(query: bytes, rcode: int) -> bytes | None:
    """A minimal reply with *rcode* built from the raw header, or None to drop.

    Used when the codec cannot be trusted with the message (or raised): keeps
    the ID, opcode and RD, echoes the question when it is plainly readable.
    Responses (QR=1) and messages shorter than a header are never answered:
    answering answers invites loops and reflection.
    """
    if len(query) < HEADER_SIZE or query[2] & QR:
        return None
    qdcount = (query[4] << 8) | query[5]
    question = b""
    if qdcount >= 1:
        end = question_end(query)
        if end is not None:
            question = query[HEADER_SIZE:end]
    flags1 = QR | (query[2] & (OPCODE_MASK | RD))
    return HEADER.pack(
        (query[0] << 8) | query[1], flags1, rcode & 0x0F, 1 if question else 0, 0, 0, 0
    ) + question
