"""Server side of an HTTP/1.1 connection, sans I/O.

``ServerConnection.receive_data(bytes)`` returns events: a
:class:`RequestReceived`, then the request body as :class:`Data` and an
:class:`EndOfMessage`. After that the core holds further (pipelined) bytes
until the adapter has sent the response and calls :meth:`next_request`, so
responses go out in request order. Bad input yields one
:class:`MessageError` (with the status to answer: 400, 414, 431, 501, 505)
and the core is dead from then on.

Bounds: the request line (``max_request_line``, 414 beyond), the field
section after it (``max_field_section`` bytes, 431 beyond), the number of
fields (431), chunk lines and
trailers (400). Bytes held while paused are bounded by the adapter, which
stops reading when ``buffered`` grows.
"""

from __future__ import annotations

from enum import Enum

from twisted_netapps.http.body import CHUNKED, LENGTH, NONE, BodyReader, request_framing
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.events import END_OF_REQUEST, Data, MessageError, RequestReceived
from twisted_netapps.http.fields import connection_options
from twisted_netapps.http.head import could_start_request, head_end, parse_request_parts
from twisted_netapps.http.targets import valid_host_field


class State(Enum):
    HEAD = "awaiting a request head"
    BODY = "receiving a request body"
    RESPONDING = "waiting for the response to be sent"
    TUNNEL = "the connection became a tunnel"
    FAILED = "broken by a protocol error"


def keep_alive(version: bytes, headers) -> bool:
    options = connection_options(headers) if b"connection" in headers else set()
    if version == b"1.0":
        return b"keep-alive" in options and b"close" not in options
    return b"close" not in options


class ServerConnection:
    def __init__(self, *, max_request_line: int = 8192, max_field_section: int = 65536, max_fields: int = 100) -> None:
        self.max_request_line = max_request_line
        self.max_field_section = max_field_section
        self.max_head = max_request_line + max_field_section + 4  # both plus their line ends
        self.max_fields = max_fields
        self.state = State.HEAD
        self._buffer = b""
        self._body: BodyReader | None = None
        self._pending_end = False
        self.requests = 0
        self.request_line = b""  # of the current request, or what arrived of it (for logs)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def head_started(self) -> bool:
        """True while part of a request head has arrived (the header deadline runs)."""
        return self.state is State.HEAD and bool(self._buffer.lstrip(b"\r\n"))

    def receive_data(self, data: bytes) -> list:
        if self.state is State.FAILED or self.state is State.TUNNEL:
            return []
        self._buffer = self._buffer + data if self._buffer else data
        return self._advance()

    def next_request(self) -> list:
        """The response was sent: parse what was pipelined behind the request."""
        if self.state is State.RESPONDING:
            self.state = State.HEAD
            return self._advance() if self._buffer else []
        return []

    def become_tunnel(self) -> bytes:
        """After a successful CONNECT: stop parsing; return bytes already received."""
        self.state = State.TUNNEL
        rest, self._buffer = self._buffer, b""
        return rest

    def _advance(self) -> list:
        events: list = []
        try:
            while True:
                if self.state is State.HEAD:
                    event = self._parse_head()
                    if event is None:
                        break
                    events.append(event)
                    if self._pending_end:  # no body: the message ends with its head
                        self._pending_end = False
                        events.append(END_OF_REQUEST)
                elif self.state is State.BODY:
                    if not self._parse_body(events):
                        break
                else:
                    break
        except ProtocolError as e:
            self.state = State.FAILED
            self._buffer = b""
            events.append(MessageError(e.status, e.detail))
        return events

    def _parse_head(self):
        buffer = self._buffer
        if buffer[:1] in (b"\r", b"\n"):
            # RFC 9112 2.2: ignore empty lines before a request line.
            buffer = self._buffer = buffer.lstrip(b"\r\n")
        found = head_end(buffer)
        if found is None:
            first_line_end = buffer.find(b"\n")
            if buffer and not could_start_request(buffer):
                self.request_line = buffer[:200].split(b"\n", 1)[0]
                raise ProtocolError(400, "not an HTTP request")
            self.request_line = buffer[:200].split(b"\n", 1)[0].rstrip(b"\r")
            if (first_line_end < 0 and len(buffer) > self.max_request_line) or first_line_end > self.max_request_line:
                raise ProtocolError(414, "request line too long")
            if len(buffer) > self.max_head:
                raise ProtocolError(431, "request header section too large")
            return None
        return self._head_block(buffer, *found)

    def _head_block(self, buffer: bytes, end: int, after: int):
        """Parse the head in ``buffer[:end]``; the next message starts at *after*."""
        newline = buffer.find(b"\n", 0, end)
        if newline < 0:
            line, section = buffer[:end], b""
        else:
            line, section = buffer[:newline], buffer[newline + 1:end]
        if len(line) > self.max_request_line:
            self.request_line = line[:200]
            raise ProtocolError(414, "request line too long")
        if line[-1:] == b"\r":
            line = line[:-1]
        self.request_line = line
        if len(section) > self.max_field_section:
            raise ProtocolError(431, "request header section too large")
        self._buffer = buffer[after:]
        head = parse_request_parts(line, section, max_fields=self.max_fields)
        headers = head.headers
        version = head.version
        fields = headers.index()
        host = fields.get(b"host")
        if type(host) is not bytes:  # absent, or a list of several
            if host is not None or version == b"1.1":
                raise ProtocolError(400, "a request needs exactly one Host field")
        elif not valid_host_field(host):
            raise ProtocolError(400, "invalid Host")
        self.requests += 1
        if head.method == b"CONNECT":
            self.state = State.RESPONDING
            return RequestReceived(head, NONE, True)
        # Most requests have no body and no Connection field: no need to ask.
        if b"content-length" in fields or b"transfer-encoding" in fields:
            framing = request_framing(headers, version)
        else:
            framing = NONE
        alive = version == b"1.1" if b"connection" not in fields else keep_alive(version, headers)
        if framing.kind == LENGTH or framing.kind == CHUNKED:
            self._body = BodyReader(framing, 400)
            self.state = State.BODY
        else:
            self.state = State.RESPONDING
            self._pending_end = True
        return RequestReceived(head, framing, alive)

    def _parse_body(self, events: list) -> bool:
        """Consume body bytes; True once the body is complete."""
        pieces, done, self._buffer = self._body.feed(self._buffer)
        for piece in pieces:
            events.append(Data(piece))
        if not done:
            return False
        self._body = None
        events.append(END_OF_REQUEST)
        self.state = State.RESPONDING
        return True

    def receive_eof(self) -> list:
        """The client half-closed: an unfinished message is an error."""
        if self.state is State.BODY:
            self.state = State.FAILED
            return [MessageError(400, "connection closed in the middle of a request body")]
        return []
