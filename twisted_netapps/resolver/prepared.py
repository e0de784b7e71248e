"""Prepared answers: encoded once, served to every client asking the same question.

A cache hit must not pay for a dnspython decode and encode (~150 us per
query): the client's query is read by :func:`twisted_netapps.dnswire.parse_plain_query`,
and an answer is encoded once, by dnspython, into a :class:`PreparedAnswer`:
the sections after the question as bytes, plus where each record's TTL sits.
Serving it means a 12-byte header with the client's ID and flags, the
client's own question bytes (same length as ours, so compression pointers
into the question stay valid), the body with TTLs counted down, and an OPT
record when the client sent one. No Twisted imports here.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import dns.name
import dns.rrset

from twisted_netapps.dnswire import (
    CD, HEADER, HEADER_SIZE, QR, RA, RD, TC, PlainQuery, WireError, opt_record, skip_name,
)

TTL = struct.Struct("!I")


def ttl_offsets(body: bytes, count: int) -> list[int]:
    """Offsets of the TTL fields of the *count* records at the start of *body*."""
    offsets = []
    pos = 0
    for _ in range(count):
        pos = skip_name(body, pos)
        if pos + 10 > len(body):
            raise WireError("record header runs past the end")
        (rdlen,) = struct.unpack_from("!H", body, pos + 8)
        offsets.append(pos + 4)
        pos += 10 + rdlen
    if pos != len(body):
        raise WireError("trailing bytes after the records")
    return offsets


@dataclass
class PreparedAnswer:
    """A final answer, encoded once and served many times.

    ``stored_at`` is the clock time the TTLs were read; a record's TTL in a
    reply is its stored TTL minus the whole seconds elapsed since.
    """

    rcode: int
    question_len: int
    counts: tuple[int, int]  # answer, authority
    body: bytes
    offsets: list[int]
    ttls: list[int]
    stored_at: float
    ttl: int  # lifetime of the whole answer (the smallest TTL)
    _patched: tuple[int, bytes] = field(default=(0, b""), repr=False)

    def __post_init__(self) -> None:
        self._patched = (0, self.body)

    @property
    def expires_at(self) -> float:
        return self.stored_at + self.ttl

    def body_after(self, elapsed: int) -> bytes:
        # At high query rates nearly every hit falls in the same second as
        # the previous one: patch once per second, not once per query.
        done, body = self._patched
        if done == elapsed:
            return body
        patched = bytearray(self.body)
        for offset, ttl in zip(self.offsets, self.ttls):
            TTL.pack_into(patched, offset, max(0, ttl - elapsed))
        body = bytes(patched)
        self._patched = (elapsed, body)
        return body

    def reply(self, query: PlainQuery, now: float, *, limit: int, our_payload: int, recursion: bool = True) -> bytes:
        """The reply to *query* (TC and no records if it exceeds *limit* bytes)."""
        question = query.question
        if len(question) != self.question_len:
            raise ValueError("question length differs from the prepared answer's")
        flags = QR | (query.flags & (RD | CD)) | self.rcode
        if recursion:
            flags |= RA
        if query.edns_payload is None:
            opt = b""
            additional = 0
        else:
            opt = opt_record(our_payload)
            additional = 1
        elapsed = int(now - self.stored_at)
        done, body = self._patched
        if done != elapsed:
            body = self.body_after(elapsed if elapsed > 0 else 0)
        an, ns = self.counts
        if HEADER_SIZE + len(question) + len(body) + len(opt) > limit:
            flags |= TC
            an = ns = 0
            body = b""
        return HEADER.pack(query.id, flags, 1, an, ns, additional) + question + body + opt


def prepare_answer(
    qname: dns.name.Name,
    qtype: int,
    qclass: int,
    rcode: int,
    answer: list[dns.rrset.RRset],
    authority: list[dns.rrset.RRset],
    now: float,
) -> PreparedAnswer:
    """Encode a final answer once (dnspython's RRset encoder), remembering its TTL fields.

    The RRsets are written straight after a placeholder header and the
    question, with names compressed against the question: cheaper than
    building and rendering a whole ``dns.message.Message``.
    """
    canonical = qname.canonicalize()
    question = canonical.to_wire() + struct.pack("!HH", qtype, qclass)
    out = io.BytesIO()
    out.write(bytes(HEADER_SIZE) + question)
    compress: dict = {canonical: HEADER_SIZE}
    counts = []
    for section in (answer, authority):
        count = 0
        for rrset in section:
            count += rrset.to_wire(out, compress)
        counts.append(count)
    body = out.getvalue()[HEADER_SIZE + len(question):]
    an, ns = counts
    offsets = ttl_offsets(body, an + ns)
    ttls = [TTL.unpack_from(body, o)[0] for o in offsets]
    return PreparedAnswer(
        rcode=rcode,
        question_len=len(question),
        counts=(an, ns),
        body=body,
        offsets=offsets,
        ttls=ttls,
        stored_at=now,
        ttl=min(ttls, default=0),
    )


# Record types whose answer records may be served as received (see
# answer_section): no names in their RDATA, or (CNAME) exactly one.
_SPLICE_PLAIN = frozenset({1, 16, 28})  # A, TXT, AAAA
_SPLICE_NAME = frozenset({5})  # CNAME
_MAX_POINTERS = 32


def _check_name(data: bytes, pos: int, floor: int) -> int:
    """Walk the name at *pos* (following pointers); every pointer must target >= *floor*.

    Returns the offset after the name's bytes at *pos*; raises WireError.
    """
    end = None
    for _ in range(_MAX_POINTERS):
        while True:
            if pos >= len(data):
                raise WireError("name runs past the end")
            length = data[pos]
            if length >= 0xC0:
                if pos + 1 >= len(data):
                    raise WireError("cut pointer")
                target = ((length & 0x3F) << 8) | data[pos + 1]
                if end is None:
                    end = pos + 2
                if target < floor or target >= pos:
                    raise WireError("pointer outside what is served")
                pos = target
                break
            if length > 63:
                raise WireError("bad label type")
            if length == 0:
                return end if end is not None else pos + 1
            pos += 1 + length
    raise WireError("pointer chain too long")


def answer_section(reply: bytes, question_len: int, count: int) -> bytes | None:
    """The answer section of upstream *reply*, if it can be served to a client byte for byte.

    Re-encoding an answer that arrived in one reply costs a dnspython encode
    per cache miss; the section as received is the same records. It is
    spliced after the client's question, which has the same length and
    structure as the one upstream echoed (same name, type and class), so
    compression pointers into the question or the section itself keep
    their meaning. None unless: exactly *count* records, types without
    names in RDATA (or CNAME), every pointer (followed to its end) landing at
    or after the question, nothing else in the section.
    """
    start = HEADER_SIZE + question_len
    pos = start
    try:
        for _ in range(count):
            pos = _check_name(reply, pos, HEADER_SIZE)
            if pos + 10 > len(reply):
                return None
            rdtype, _rdclass, _ttl, rdlen = struct.unpack_from("!HHIH", reply, pos)
            pos += 10
            end = pos + rdlen
            if end > len(reply):
                return None
            if rdtype in _SPLICE_NAME:
                if _check_name(reply, pos, HEADER_SIZE) != end:
                    return None
            elif rdtype not in _SPLICE_PLAIN:
                return None
            pos = end
    except WireError:
        return None
    return reply[start:pos]


def splice_answer(
    question_len: int, rcode: int, answer: list[dns.rrset.RRset], section: bytes, now: float
) -> PreparedAnswer | None:
    """A :class:`PreparedAnswer` serving *section* (from :func:`answer_section`) as the answer.

    None (encode instead) unless the section holds exactly the records of
    *answer* with their TTLs: the caller's RRsets are what was checked.
    """
    count = sum(len(rrset) for rrset in answer)
    try:
        offsets = ttl_offsets(section, count)
    except WireError:
        return None
    ttls = [TTL.unpack_from(section, o)[0] for o in offsets]
    if sorted(ttls) != sorted(rrset.ttl for rrset in answer for _ in range(len(rrset))):
        return None
    return PreparedAnswer(
        rcode=rcode,
        question_len=question_len,
        counts=(count, 0),
        body=section,
        offsets=offsets,
        ttls=ttls,
        stored_at=now,
        ttl=min(ttls, default=0),
    )


