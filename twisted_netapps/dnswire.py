"""The raw DNS wire layer shared by ``dns``, ``resolver`` and the mail MX client.

One header codec, one set of flag constants, one plain-query parser, one
error reply and one reply-size rule, on bytes: no Twisted, and no dnspython
codec (only ``dns.name.Name`` where a name object is asked for). dnspython
remains the codec for everything else; these helpers run before it (on the
hot path, to find and key the question cheaply) or instead of it (at the
protocol boundary, to answer SERVFAIL/FORMERR to a message the codec could
not or should not handle).

Imports flow one way: this module -> ``dns`` (authoritative) and
``resolver`` (recursive) -> their adapters.
"""

from __future__ import annotations

import functools
import struct

import dns.name

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
HEADER_SIZE = 12
MAX_NAME_WIRE = 255
MIN_UDP_PAYLOAD = 512  # RFC 1035 4.2.1; RFC 6891 6.2.3: an EDNS payload below it counts as 512
MAX_TCP_MESSAGE = 65535
TYPE_OPT = 41

# Header flags: the 16-bit field after the ID (RFC 1035 4.1.1; same values as dns.flags).
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010
RCODE_MASK = 0x000F

# The 4-bit rcodes.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

# An OPT record's fixed part: owner (root: one zero byte), type, UDP payload,
# extended rcode, version, flags (DO is the top bit), RDATA length.
_OPT_FIXED = struct.Struct("!BHHBBHH")


class WireError(ValueError):
    """Bytes that are not a well-formed message."""


# -- reading the header -------------------------------------------------------

def flags_of(message: bytes) -> int:
    return (message[2] << 8) | message[3]


def rcode_of(message: bytes) -> int:
    """The header's 4-bit rcode (extended rcodes live in the OPT record)."""
    return message[3] & RCODE_MASK


def is_response(message: bytes) -> bool:
    return len(message) >= 3 and bool(message[2] & (QR >> 8))


def is_truncated(message: bytes) -> bool:
    return len(message) >= 3 and bool(message[2] & (TC >> 8))


def question_end(message: bytes, offset: int = HEADER_SIZE) -> int | None:
    """Offset just past the question (name, type, class) at *offset*, or None.

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


def skip_name(data: bytes, pos: int) -> int:
    """Offset after the (possibly compressed) name at *pos*; raises :class:`WireError`."""
    while True:
        if pos >= len(data):
            raise WireError("name runs past the end")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= len(data):
                raise WireError("cut pointer")
            return pos + 2
        if length > 63:
            raise WireError("bad label type")
        if length == 0:
            return pos + 1
        pos += 1 + length


# -- sizes and EDNS -----------------------------------------------------------

def reply_size_limit(over_tcp: bool, edns_payload: int | None, our_max: int) -> int:
    """Largest reply a client can take: 64 KiB over TCP; over UDP 512 without
    EDNS, else its payload size clamped to [512, *our_max*] (RFC 6891 6.2.5)."""
    if over_tcp:
        return MAX_TCP_MESSAGE
    if edns_payload is None or edns_payload <= MIN_UDP_PAYLOAD:
        return MIN_UDP_PAYLOAD
    return edns_payload if edns_payload < our_max else max(our_max, MIN_UDP_PAYLOAD)


@functools.lru_cache(maxsize=8)
def opt_record(payload: int) -> bytes:
    """Our OPT record: root owner, our UDP payload size, version 0, no flags, no options."""
    return b"\x00" + struct.pack("!HHIH", TYPE_OPT, payload, 0, 0)


# -- messages we write --------------------------------------------------------

def error_reply(query: bytes, rcode: int, *, recursion_available: bool = False,
                opt_payload: int | None = None) -> bytes | None:
    """A header-only reply with *rcode* built from the raw *query*, or None to drop.

    Keeps the ID, opcode, RD and CD (RFC 4035 3.1.6), echoes the question
    when it is plainly readable, sets RA if *recursion_available*, and adds
    our OPT record when *opt_payload* is given (the client sent EDNS).
    Responses (QR=1) and messages shorter than a header are never
    answered: answering answers invites loops and reflection.
    """
    if len(query) < HEADER_SIZE or query[2] & (QR >> 8):
        return None
    question = b""
    if (query[4] << 8) | query[5]:
        end = question_end(query)
        if end is not None:
            question = query[HEADER_SIZE:end]
    flags = QR | (flags_of(query) & (OPCODE_MASK | RD | CD)) | (rcode & RCODE_MASK)
    if recursion_available:
        flags |= RA
    opt = b"" if opt_payload is None else opt_record(opt_payload)
    return (HEADER.pack((query[0] << 8) | query[1], flags, 1 if question else 0, 0, 0, 1 if opt else 0)
            + question + opt)


def build_query(qid: int, qname: dns.name.Name, qtype: int, *, recursion: bool,
                edns_payload: int | None, qclass: int = 1) -> bytes:
    """A query's wire form, by hand (dnspython's make_query + to_wire costs ~10x more)."""
    opt = opt_record(edns_payload) if edns_payload is not None else b""
    return (
        HEADER.pack(qid, RD if recursion else 0, 1, 0, 0, 1 if opt else 0)
        + qname.to_wire() + struct.pack("!HH", qtype, qclass) + opt
    )


# -- the plain query ----------------------------------------------------------

class PlainQuery:
    """A query of the plain shape, read without dnspython (see :func:`parse_plain_query`).

    A slotted class with a plain ``__init__``, not a frozen dataclass: one is
    built per query on the hot path, and a frozen dataclass's ``__init__``
    costs several times more.
    """

    __slots__ = ("data", "id", "flags", "question", "key", "edns_payload", "do")

    def __init__(self, data: bytes, id: int, flags: int, question: bytes, key: bytes,
                 edns_payload: int | None, do: bool) -> None:
        self.data = data  # the whole message as received
        self.id = id
        self.flags = flags
        self.question = question  # exactly as the client sent it (name, type, class)
        self.key = key  # the question with its name lowercased: the cache key
        self.edns_payload = edns_payload  # None: the client sent no OPT record
        self.do = do  # the OPT record's DNSSEC OK bit

    def __repr__(self) -> str:
        return f"PlainQuery(id={self.id}, key={self.key!r}, edns_payload={self.edns_payload})"

    @property
    def qtype(self) -> int:
        return (self.question[-4] << 8) | self.question[-3]

    @property
    def qclass(self) -> int:
        return (self.question[-2] << 8) | self.question[-1]

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)

    @property
    def end(self) -> int:
        """Offset just past the question in :attr:`data`."""
        return HEADER_SIZE + len(self.question)


def scan_plain_query(data: bytes) -> tuple[int, int, int | None, bool] | None:
    """Where the parts of a plain query are: (offset of the name's root label,
    end of the question, EDNS payload or None, DO bit), or None if *data* is
    not of the plain shape (then ask the codec).

    Plain: QR=0, opcode QUERY, one question with an uncompressed name of at
    most 255 bytes, no answer or authority records, and nothing else but at
    most one version-0 OPT record with well-formed options (whose content
    may be ignored: COOKIE, NSID, padding... a server that does not
    implement an option ignores it). Anything else (other opcodes, several
    questions, TSIG, malformed or truncated messages) returns None, and the
    caller's codec path answers FORMERR/NOTIMP/... as the case requires.
    The name is lowercased by callers from ``data[12:root]`` only: the type
    and class bytes may look like ASCII letters.
    """
    size = len(data)
    if size < 17:
        return None
    _qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & (QR | OPCODE_MASK) or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    pos = HEADER_SIZE
    length = data[pos]
    while length:
        if length > 63:  # compression pointers or extended labels: not in a plain query
            return None
        pos += length + 1
        if pos >= size or pos >= HEADER_SIZE + MAX_NAME_WIRE:
            return None
        length = data[pos]
    end = pos + 5  # past the root label, type and class
    if not arcount:
        return (pos, end, None, False) if end == size else None
    if end + 11 > size:
        return None
    owner, rtype, edns_payload, ext_rcode, version, ednsflags, rdlen = _OPT_FIXED.unpack_from(data, end)
    if owner or rtype != TYPE_OPT or ext_rcode or version or end + 11 + rdlen != size:
        return None
    if rdlen:
        j = end + 11
        while j < size:  # the options must be well-formed TLVs
            if j + 4 > size:
                return None
            j += 4 + ((data[j + 2] << 8) | data[j + 3])
        if j != size:
            return None
    return pos, end, edns_payload, ednsflags >= 0x8000


def parse_plain_query(data: bytes) -> PlainQuery | None:
    """The query in *data* as a :class:`PlainQuery` if it has the plain shape
    (see :func:`scan_plain_query`); None means "ask the codec"."""
    scan = scan_plain_query(data)
    if scan is None:
        return None
    root, end, edns_payload, do = scan
    return PlainQuery(data, (data[0] << 8) | data[1], (data[2] << 8) | data[3], data[HEADER_SIZE:end],
                      data[HEADER_SIZE:root].lower() + data[root:end], edns_payload, do)


def question_name(query: PlainQuery) -> dns.name.Name:
    """The (lowercased) question name of *query*.

    ``key`` holds the name as plain labels, so the labels are sliced out and
    given to ``dns.name.Name``, which checks them: a third of
    ``dns.name.from_wire``'s cost, once per cache miss.
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
