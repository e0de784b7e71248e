"""The peer wire protocol (BEP 3, BEP 6 fast extension, BEP 10 extension protocol), sans-I/O.

:class:`WireReader` turns received bytes into message events. It is bounded:
a message longer than ``max_message`` (a 16 KiB block plus headers, or the
bitfield, whichever is larger) or a malformed fixed-size message ends the
stream with :class:`ProtocolError`; so does a first byte that is not the
plain-text handshake (an encrypted MSE handshake: the peer retries in plain
text). Encoders are plain functions returning bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PSTR = b"\x13BitTorrent protocol"
HANDSHAKE_LENGTH = 68
BLOCK_SIZE = 16 * 1024

CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL, PORT = range(10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 0x0D, 0x0E, 0x0F, 0x10, 0x11
EXTENDED = 20


def reserved_bits(*, extensions: bool = True, fast: bool = True) -> bytes:
    reserved = bytearray(8)
    if extensions:
        reserved[5] |= 0x10  # BEP 10
    if fast:
        reserved[7] |= 0x04  # BEP 6
    return bytes(reserved)


def supports_extensions(reserved: bytes) -> bool:
    return bool(reserved[5] & 0x10)


def supports_fast(reserved: bytes) -> bool:
    return bool(reserved[7] & 0x04)


# -- events ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Handshake:
    reserved: bytes
    info_hash: bytes
    peer_id: bytes


@dataclass(frozen=True, slots=True)
class KeepAlive:
    pass


@dataclass(frozen=True, slots=True)
class Choke:
    pass


@dataclass(frozen=True, slots=True)
class Unchoke:
    pass


@dataclass(frozen=True, slots=True)
class Interested:
    pass


@dataclass(frozen=True, slots=True)
class NotInterested:
    pass


@dataclass(frozen=True, slots=True)
class Have:
    index: int


@dataclass(frozen=True, slots=True)
class Bitfield:
    bits: bytes


@dataclass(frozen=True, slots=True)
class Request:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class Piece:
    index: int
    begin: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Cancel:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class Port:
    port: int


@dataclass(frozen=True, slots=True)
class Suggest:
    index: int


@dataclass(frozen=True, slots=True)
class HaveAll:
    pass


@dataclass(frozen=True, slots=True)
class HaveNone:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class AllowedFast:
    index: int


@dataclass(frozen=True, slots=True)
class Extended:
    ext_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Unknown:
    message_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ProtocolError:
    reason: str


_NO_PAYLOAD = {
    CHOKE: Choke(), UNCHOKE: Unchoke(), INTERESTED: Interested(), NOT_INTERESTED: NotInterested(),
    HAVE_ALL: HaveAll(), HAVE_NONE: HaveNone(),
}
_ONE_INT = {HAVE: Have, SUGGEST: Suggest, ALLOWED_FAST: AllowedFast}
_THREE_INTS = {REQUEST: Request, CANCEL: Cancel, REJECT: Reject}
_KEEPALIVE = KeepAlive()


class WireReader:
    """Bytes in, message events out; the handshake first unless *handshake* is False."""

    def __init__(self, *, max_message: int = BLOCK_SIZE + 13, handshake: bool = True) -> None:
        self.max_message = max(max_message, BLOCK_SIZE + 13, 64 * 1024)
        self.buffer = bytearray()
        self.need_handshake = handshake
        self.failed = False

    def set_piece_count(self, pieces: int) -> None:
        """Allow a bitfield for *pieces* pieces (larger torrents have larger bitfields)."""
        self.max_message = max(self.max_message, (pieces + 7) // 8 + 1)

    def _fail(self, reason: str, events: list) -> list:
        self.failed = True
        self.buffer.clear()
        events.append(ProtocolError(reason))
        return events

    def receive_data(self, data: bytes) -> list:
        if self.failed:
            return []
        buf = self.buffer
        buf += data
        events: list = []
        pos = 0
        if self.need_handshake:
            if buf[:len(PSTR)] != PSTR[:len(buf)]:
                return self._fail("not a plain BitTorrent handshake (encrypted?)", events)
            if len(buf) < HANDSHAKE_LENGTH:
                return events
            events.append(Handshake(bytes(buf[20:28]), bytes(buf[28:48]), bytes(buf[48:68])))
            self.need_handshake = False
            pos = HANDSHAKE_LENGTH
        end_of_data = len(buf)
        unpack = struct.unpack_from
        while end_of_data - pos >= 4:
            (length,) = unpack("!I", buf, pos)
            if length == 0:
                events.append(_KEEPALIVE)
                pos += 4
                continue
            if length > self.max_message:
                return self._fail(f"message of {length} bytes is over the {self.max_message} limit", events)
            end = pos + 4 + length
            if end > end_of_data:
                break
            mid = buf[pos + 4]
            if mid == PIECE:
                if length < 9:
                    return self._fail("short piece message", events)
                index, begin = unpack("!II", buf, pos + 5)
                events.append(Piece(index, begin, bytes(buf[pos + 13:end])))
            elif mid in _NO_PAYLOAD:
                if length != 1:
                    return self._fail(f"message {mid} with a payload", events)
                events.append(_NO_PAYLOAD[mid])
            elif mid in _THREE_INTS:
                if length != 13:
                    return self._fail(f"message {mid} of {length} bytes", events)
                events.append(_THREE_INTS[mid](*unpack("!III", buf, pos + 5)))
            elif mid in _ONE_INT:
                if length != 5:
                    return self._fail(f"message {mid} of {length} bytes", events)
                events.append(_ONE_INT[mid](unpack("!I", buf, pos + 5)[0]))
            elif mid == BITFIELD:
                events.append(Bitfield(bytes(buf[pos + 5:end])))
            elif mid == EXTENDED:
                if length < 2:
                    return self._fail("empty extended message", events)
                events.append(Extended(buf[pos + 5], bytes(buf[pos + 6:end])))
            elif mid == PORT:
                if length != 3:
                    return self._fail("port message of wrong size", events)
                events.append(Port(unpack("!H", buf, pos + 5)[0]))
            else:
                events.append(Unknown(mid, bytes(buf[pos + 5:end])))
            pos = end
        if pos:
            del buf[:pos]
        return events


# -- encoders ---------------------------------------------------------------------

def handshake(info_hash: bytes, peer_id: bytes, reserved: bytes | None = None) -> bytes:
    return PSTR + (reserved if reserved is not None else reserved_bits()) + info_hash + peer_id


KEEPALIVE = b"\0\0\0\0"


def _simple(mid: int) -> bytes:
    return struct.pack("!IB", 1, mid)


CHOKE_MESSAGE = _simple(CHOKE)
UNCHOKE_MESSAGE = _simple(UNCHOKE)
INTERESTED_MESSAGE = _simple(INTERESTED)
NOT_INTERESTED_MESSAGE = _simple(NOT_INTERESTED)
HAVE_ALL_MESSAGE = _simple(HAVE_ALL)
HAVE_NONE_MESSAGE = _simple(HAVE_NONE)

_ONE = struct.Struct("!IBI")
_THREE = struct.Struct("!IBIII")
_PIECE_HEADER = struct.Struct("!IBII")


def have(index: int) -> bytes:
    return _ONE.pack(5, HAVE, index)


def suggest(index: int) -> bytes:
    return _ONE.pack(5, SUGGEST, index)


def allowed_fast(index: int) -> bytes:
    return _ONE.pack(5, ALLOWED_FAST, index)


def bitfield(bits: bytes) -> bytes:
    return struct.pack("!IB", len(bits) + 1, BITFIELD) + bits


def request(index: int, begin: int, length: int) -> bytes:
    return _THREE.pack(13, REQUEST, index, begin, length)


def cancel(index: int, begin: int, length: int) -> bytes:
    return _THREE.pack(13, CANCEL, index, begin, length)


def reject(index: int, begin: int, length: int) -> bytes:
    return _THREE.pack(13, REJECT, index, begin, length)


def piece_header(index: int, begin: int, length: int) -> bytes:
    return _PIECE_HEADER.pack(9 + length, PIECE, index, begin)


def piece(index: int, begin: int, data: bytes) -> bytes:
    return piece_header(index, begin, len(data)) + data


def port(number: int) -> bytes:
    return struct.pack("!IBH", 3, PORT, number)


def extended(ext_id: int, payload: bytes) -> bytes:
    return struct.pack("!IBB", len(payload) + 2, EXTENDED, ext_id) + payload
