"""Message body framing (RFC 9112 6-7): how long a body is, and chunked coding.

The request-side rules are the smuggling defences: a request with both
Content-Length and Transfer-Encoding is rejected (RFC 9112 6.1 allows
treating it as an error and says it "ought to be handled as an error"), as
is any transfer coding but exactly ``chunked``, a Content-Length that is not
one plain decimal number, and chunk framing that is not byte-exact (hex
sizes without prefixes or signs, CRLF line ends, bounded extensions and
trailers). Two parsers that disagree on where a message ends are how
requests get smuggled; ours accepts only the one unambiguous reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.fields import Headers, split_lists

NO_BODY = "none"
LENGTH = "length"
CHUNKED = "chunked"
UNTIL_CLOSE = "close"

MAX_CHUNK_LINE = 4096  # size + extensions
MAX_TRAILER = 16384
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})([ \t]*;[^\r\n]*)?")
_CHUNK_EXT = re.compile(
    rb'(?:[ \t]*;[ \t]*[!#$%&\'*+\-.^_`|~0-9A-Za-z]+'
    rb'(?:[ \t]*=[ \t]*(?:[!#$%&\'*+\-.^_`|~0-9A-Za-z]+|"(?:[^"\\\r\n]|\\[^\r\n])*"))?)*'
)


@dataclass(frozen=True, slots=True)
class Framing:
    kind: str  # NO_BODY, LENGTH, CHUNKED or UNTIL_CLOSE
    length: int = 0


NONE = Framing(NO_BODY)


def _content_length(headers: Headers, status: int) -> int | None:
    values = headers.get_all(b"content-length")
    if not values:
        return None
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 18:
        raise ProtocolError(status, "invalid Content-Length")
    return int(values[0])


def _check_request_codings(headers: Headers) -> None:
    codings = [c.lower() for c in split_lists(headers.get_all(b"transfer-encoding"))]
    if not codings or codings[-1] != b"chunked":
        # RFC 9112 6.3: the length cannot be determined: 400, then close.
        raise ProtocolError(400, "Transfer-Encoding does not end in chunked")
    if len(codings) > 1:
        # 6.1: a coding we do not understand (we decode none but chunked).
        raise ProtocolError(501, "unsupported transfer coding")


def request_framing(headers: Headers, version: bytes) -> Framing:
    """How the body of a request with *headers* is delimited."""
    has_te = b"transfer-encoding" in headers
    if has_te and b"content-length" in headers:
        raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
    if has_te:
        if version == b"1.0":  # RFC 9112 6.1: faulty framing in HTTP/1.0
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        _check_request_codings(headers)
        return Framing(CHUNKED)
    length = _content_length(headers, 400)
    if length:
        return Framing(LENGTH, length)
    return NONE


def response_framing(request_method: bytes, status: int, headers: Headers) -> Framing:
    """How the body of a response from upstream is delimited (RFC 9112 6.3)."""
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        return NONE
    if request_method == b"CONNECT" and 200 <= status < 300:
        return NONE
    has_te = b"transfer-encoding" in headers
    if has_te and b"content-length" in headers:
        # 6.3 says TE overrides CL but the message "ought to be handled as an
        # error": a response split like this poisons caches, so we refuse it.
        raise ProtocolError(502, "upstream sent both Content-Length and Transfer-Encoding")
    if has_te:
        codings = [c.lower() for c in split_lists(headers.get_all(b"transfer-encoding"))]
        if codings and codings[-1] == b"chunked":
            if codings != [b"chunked"]:
                raise ProtocolError(502, "unsupported transfer coding from upstream")
            return Framing(CHUNKED)
        return Framing(UNTIL_CLOSE)
    length = _content_length(headers, 502)
    if length is not None:
        return Framing(LENGTH, length) if length else NONE
    return Framing(UNTIL_CLOSE)


class ChunkedDecoder:
    """Incremental strict decoder of the chunked coding.

    ``feed(data)`` returns the content bytes decoded so far; ``done`` turns
    True after the last chunk and trailer section, and ``leftover`` holds
    the bytes that followed (the next message, pipelined).
    """

    __slots__ = ("_buffer", "_remaining", "_state", "done", "leftover", "error_status", "_trailer_size")

    def __init__(self, error_status: int = 400) -> None:
        self._buffer = bytearray()
        self._remaining = 0
        self._state = "size"  # size, data, data_crlf, trailer
        self.done = False
        self.leftover = b""
        self.error_status = error_status
        self._trailer_size = 0

    def _fail(self, detail: str):
        raise ProtocolError(self.error_status, detail)

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.leftover += data
            return []
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        pos = 0
        while True:
            state = self._state
            if state == "data":
                take = min(self._remaining, len(buffer) - pos)
                if take == 0:
                    break
                out.append(bytes(buffer[pos : pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "data_crlf"
                continue
            if state == "data_crlf":
                if len(buffer) - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    self._fail("chunk data not followed by CRLF")
                pos += 2
                self._state = "size"
                continue
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                limit = MAX_CHUNK_LINE if state == "size" else MAX_TRAILER - self._trailer_size
                if len(buffer) - pos > limit:
                    self._fail("chunk size line or trailer too long")
                if b"\n" in buffer[pos:]:
                    self._fail("bare LF in chunked framing")
                break
            line = bytes(buffer[pos:end])
            pos = end + 2
            if b"\n" in line or b"\r" in line:
                self._fail("bare CR or LF in chunked framing")
            if state == "size":
                if len(line) > MAX_CHUNK_LINE:
                    self._fail("chunk size line too long")
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None or (match.group(2) and not _CHUNK_EXT.fullmatch(match.group(2))):
                    self._fail("invalid chunk size line")
                size = int(match.group(1), 16)
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining = size
                    self._state = "data"
                continue
            # trailer section: field lines until an empty line; discarded
            self._trailer_size += len(line) + 2
            if self._trailer_size > MAX_TRAILER:
                self._fail("trailer section too long")
            if not line:
                self.done = True
                self.leftover = bytes(buffer[pos:])
                buffer.clear()
                return out
            if b":" not in line:
                self._fail("malformed trailer field")
        del buffer[:pos]
        return out


class BodyReader:
    """Reads one message body framed by *framing* out of the bytes that arrive.

    ``feed(buffer)`` returns (content pieces, whether the body is complete,
    the bytes after it). A close-delimited body completes only at
    :meth:`end_of_stream`; errors are :class:`ProtocolError` with
    *error_status*.
    """

    __slots__ = ("kind", "_remaining", "_chunked")

    def __init__(self, framing: Framing, error_status: int) -> None:
        self.kind = framing.kind
        self._remaining = framing.length
        self._chunked = ChunkedDecoder(error_status) if framing.kind == CHUNKED else None

    def feed(self, buffer: bytes) -> tuple[list[bytes], bool, bytes]:
        if self._chunked is not None:
            pieces = self._chunked.feed(buffer)
            if not self._chunked.done:
                return pieces, False, b""
            return pieces, True, self._chunked.leftover
        if self.kind == UNTIL_CLOSE:
            return ([buffer] if buffer else []), False, b""
        if not buffer:
            return [], self._remaining == 0, b""
        take = buffer if len(buffer) <= self._remaining else buffer[: self._remaining]
        self._remaining -= len(take)
        return [take], self._remaining == 0, buffer[len(take):]


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"
