"""Wire-format fast path: client queries in, prepared answers out.

A cache hit must not pay for a dnspython decode and encode (~150 us per
query). So the common query shape (one question, no answer/authority
records, at most one OPT record) is parsed here by hand, bounded, into a
:class:`ClientQuery`; anything else returns None and the caller falls back
to dnspython, which then produces FORMERR/NOTIMP/... as needed.

An answer is encoded once, by dnspython, into a :class:`PreparedAnswer`: the
sections after the question as bytes, plus where each record's TTL sits.
Serving it means a 12-byte header with the client's ID and flags, the
client's own question bytes (same length as ours, so compression pointers
into the question stay valid), the body with TTLs counted down, and an OPT
record when the client sent one. No Twisted imports here.
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rrset

HEADER = struct.Struct("!HHHHHH")
TTL = struct.Struct("!I")
QTYPE_QCLASS = struct.Struct("!HH")
OPT_FIXED = struct.Struct("!HHBBHH")
MAX_NAME_WIRE = 255
MIN_UDP_PAYLOAD = 512
TYPE_OPT = 41

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800


class WireError(ValueError):
    """Bytes that are not a well-formed message (for the TTL walker)."""


class ClientQuery:
    """A plain query, parsed without dnspython.

    A slotted class with a plain ``__init__``, not a frozen dataclass: one is
    built per query on the hot path, and a frozen dataclass's ``__init__``
    costs several times more.
    """

    __slots__ = ("id", "flags", "question", "key", "qtype", "qclass", "edns_payload")

    def __init__(self, id: int, flags: int, question: bytes, key: bytes, qtype: int, qclass: int,
                 edns_payload: int | None) -> None:
        self.id = id
        self.flags = flags
        self.question = question  # exactly as the client sent it (name, type, class)
        self.key = key  # the question with its name lowercased: the cache key
        self.qtype = qtype
        self.qclass = qclass
        self.edns_payload = edns_payload  # None: the client sent no OPT record

    def __repr__(self) -> str:
        return f"ClientQuery(id={self.id}, key={self.key!r}, edns_payload={self.edns_payload})"

    @property
    def rd(self) -> bool:
        return bool(self.flags & FLAG_RD)

    def udp_limit(self, our_max: int) -> int:
        """Largest UDP reply this client accepts (RFC 6891: at least 512)."""
        if self.edns_payload is None:
            return MIN_UDP_PAYLOAD
        return max(MIN_UDP_PAYLOAD, min(self.edns_payload, our_max))


def parse_client_query(data: bytes) -> ClientQuery | None:
    """The query in *data* if it has the plain shape; None means "use dnspython"."""
    size = len(data)
    if size < 17 or size > 512:
        return None
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & (FLAG_QR | OPCODE_MASK) or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    pos = 12
    while True:
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:  # compression pointers or extended labels: not in a plain query
            return None
        pos += 1 + length
        if pos - 12 > MAX_NAME_WIRE - 1 or pos >= size:
            return None
    end = pos + 4
    if end > size:
        return None
    qtype, qclass = QTYPE_QCLASS.unpack_from(data, pos)
    question = data[12:end]
    edns_payload = None
    if arcount:
        # Exactly one OPT record: root owner, type 41, version 0.
        if end + 11 > size or data[end] != 0:
            return None
        rtype, payload, ext_rcode, version, _flags, rdlen = OPT_FIXED.unpack_from(data, end + 1)
        if rtype != TYPE_OPT or version != 0 or ext_rcode != 0 or end + 11 + rdlen != size:
            return None
        edns_payload = payload
    elif end != size:
        return None
    # Lowercase the name only: type/class bytes may look like ASCII letters.
    return ClientQuery(qid, flags, question, data[12:pos].lower() + data[pos:end], qtype, qclass, edns_payload)


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise WireError("name runs past the end")
        length = data[pos]
        if length >= 0xC0:
            return pos + 2
        if length > 63:
            raise WireError("bad label type")
        if length == 0:
            return pos + 1
        pos += 1 + length


def question_end(message: bytes) -> int:
    """Offset just past the first question of a well-formed *message* (e.g. one we built)."""
    return _skip_name(message, 12) + 4


def ttl_offsets(body: bytes, count: int) -> list[int]:
    """Offsets of the TTL fields of the *count* records at the start of *body*."""
    offsets = []
    pos = 0
    for _ in range(count):
        pos = _skip_name(body, pos)
        if pos + 10 > len(body):
            raise WireError("record header runs past the end")
        (rdlen,) = struct.unpack_from("!H", body, pos + 8)
        offsets.append(pos + 4)
        pos += 10 + rdlen
    if pos != len(body):
        raise WireError("trailing bytes after the records")
    return offsets


def trim_reply(data: bytes) -> tuple[bytes, bool]:
    """*data* (an upstream reply) without what the core will not read; (bytes, answers_only).

    Decoding is the dominant cost of a cache miss, and dnspython decodes
    every record it is given, so before decoding:

    - an authoritative NOERROR reply with answers is cut to header, question
      and answer section (``answers_only`` True): the NS/SOA/glue after it
      are needed only if the answers do not settle the question, and then
      the core decodes the whole reply;
    - anything else (referrals, negative answers, truncated or odd replies)
      is returned unchanged, without walking it.

    Anything that does not walk cleanly is returned unchanged.
    """
    if len(data) < 12:
        return data, False
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    rcode = flags & 0x000F
    if flags & FLAG_TC or rcode not in (0, 3) or qdcount != 1:
        return data, False
    if not (flags & FLAG_AA and rcode == 0 and ancount and (nscount or arcount)):
        # Nothing to cut (referrals, negative answers): the walk would only
        # drop the OPT record, which the decoder reads for almost nothing.
        return data, False
    try:
        pos = _skip_name(data, 12) + 4
        starts = []
        for _ in range(ancount + nscount + arcount):
            starts.append(pos)
            pos = _skip_name(data, pos)
            if pos + 10 > len(data):
                return data, False
            pos += 10 + struct.unpack_from("!H", data, pos + 8)[0]
    except WireError:
        return data, False
    if pos != len(data):
        return data, False
    cut = starts[ancount] if ancount < len(starts) else pos
    return HEADER.pack(qid, flags, 1, ancount, 0, 0) + data[12:cut], True


@functools.lru_cache(maxsize=8)
def opt_record(payload: int) -> bytes:
    """Our OPT record: root owner, our UDP payload size, version 0, no options."""
    return b"\x00" + struct.pack("!HHIH", TYPE_OPT, payload, 0, 0)


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

    def reply(self, query: ClientQuery, now: float, *, limit: int, our_payload: int, recursion: bool = True) -> bytes:
        """The reply to *query* (TC and no records if it exceeds *limit* bytes)."""
        question = query.question
        if len(question) != self.question_len:
            raise ValueError("question length differs from the prepared answer's")
        flags = FLAG_QR | (query.flags & (FLAG_RD | FLAG_CD)) | self.rcode
        if recursion:
            flags |= FLAG_RA
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
        if 12 + len(question) + len(body) + len(opt) > limit:
            flags |= FLAG_TC
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
    out.write(bytes(12) + question)
    compress: dict = {canonical: 12}
    counts = []
    for section in (answer, authority):
        count = 0
        for rrset in section:
            count += rrset.to_wire(out, compress)
        counts.append(count)
    body = out.getvalue()[12 + len(question):]
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
    start = 12 + question_len
    pos = start
    try:
        for _ in range(count):
            pos = _check_name(reply, pos, 12)
            if pos + 10 > len(reply):
                return None
            rdtype, _rdclass, _ttl, rdlen = struct.unpack_from("!HHIH", reply, pos)
            pos += 10
            end = pos + rdlen
            if end > len(reply):
                return None
            if rdtype in _SPLICE_NAME:
                if _check_name(reply, pos, 12) != end:
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


def build_query(qid: int, qname: dns.name.Name, qtype: int, *, recursion: bool, edns_payload: int | None) -> bytes:
    """An upstream query's wire form, by hand (dnspython's make_query + to_wire costs ~10x more)."""
    flags = FLAG_RD if recursion else 0
    opt = opt_record(edns_payload) if edns_payload is not None else b""
    return (
        HEADER.pack(qid, flags, 1, 0, 0, 1 if opt else 0)
        + qname.to_wire() + struct.pack("!HH", qtype, dns.rdataclass.IN) + opt
    )


def error_reply(query: ClientQuery, rcode: int, *, recursion: bool, our_payload: int) -> bytes:
    """Header + question only, with *rcode* (REFUSED, SERVFAIL...)."""
    flags = FLAG_QR | (query.flags & (FLAG_RD | FLAG_CD)) | rcode
    if recursion:
        flags |= FLAG_RA
    opt = opt_record(our_payload) if query.edns_payload is not None else b""
    return HEADER.pack(query.id, flags, 1, 0, 0, 1 if opt else 0) + query.question + opt


def question_name(query: ClientQuery) -> dns.name.Name:
    """The (lowercased) question name of *query*.

    ``key`` holds the name as plain labels (parse_client_query sends
    compressed questions to dnspython, whose re-encoded names are plain), so
    the labels are sliced out and given to ``dns.name.Name``, which checks
    them: a third of ``dns.name.from_wire``'s cost, once per cache miss.
    """
    key = query.key
    labels = []
    pos = 0
    end = len(key) - 4
    while pos < end:
        length = key[pos]
        if length == 0 or length > 63:
            break
        labels.append(key[pos + 1:pos + 1 + length])
        pos += 1 + length
    if pos != end - 1 or key[pos] != 0:
        return dns.name.from_wire(key, 0)[0]  # not plain labels after all: let dnspython judge
    labels.append(b"")
    return dns.name.Name(labels)
