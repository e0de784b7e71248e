"""The server side of one HTTP/1.1 connection, sans-I/O (h11's shape, server only).

:class:`ServerConnection` takes the bytes the client sends
(:meth:`~ServerConnection.receive_data`) and returns events; it serialises
response heads (:meth:`~ServerConnection.response_head`) and decides whether
the connection stays open. The adapter does the I/O, the timers and the work.

Requests are handled strictly one at a time, in order: after a
:class:`RequestComplete` the core parses nothing more until the adapter says
the response is finished (:meth:`~ServerConnection.response_finished`), which
then yields the next pipelined request already buffered. While paused, what
the client keeps sending is buffered; :attr:`~ServerConnection.buffered`
lets the adapter stop reading when that grows.

Time is never read here. :class:`RequestStarted` marks the first byte of a
request and :attr:`~ServerConnection.state` says whether a request is left
incomplete (HEAD, BODY) after a read: the adapter counts its header and
request deadlines from there, which is what defeats a slowloris client that
an idle timer alone would let trickle forever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted_netapps.sansio import Close, StateMachine
from twisted_netapps.web.wire import BadRequest, ChunkedDecoder, Limits, RequestHead, looks_like_request_start, parse_request_head

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 416: "Range Not Satisfiable",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported", 507: "Insufficient Storage",
}
STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode("ascii") for code, reason in REASONS.items()}


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """The first byte of a new request arrived (start the header deadline)."""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A complete, valid request head."""

    head: RequestHead


@dataclass(frozen=True, slots=True)
class BodyData:
    data: bytes


@dataclass(frozen=True, slots=True)
class RequestComplete:
    """The request (head and body) is complete; the core waits for the response."""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The client sent something unacceptable: answer *status*, then close."""

    status: int
    reason: str
    request_line: bytes  # what we had of it, for the log


# ------------------------------------------------------------------ states


class State(enum.Enum):
    IDLE = "idle"  # between requests
    HEAD = "head"  # receiving a request line and header section
    BODY = "body"  # receiving a request body
    DONE = "done"  # request complete, its response not finished yet
    ERROR = "error"  # a ProtocolError was raised; only its reply may be sent
    CLOSED = "closed"


TRANSITIONS = {
    State.IDLE: frozenset({State.HEAD, State.CLOSED}),
    State.HEAD: frozenset({State.BODY, State.DONE, State.ERROR, State.CLOSED}),
    State.BODY: frozenset({State.DONE, State.ERROR, State.CLOSED}),
    State.DONE: frozenset({State.IDLE, State.CLOSED}),
    State.ERROR: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


def render_fields(fields) -> bytes:
    """``Name: value\\r\\n`` lines for (name, value) pairs of bytes."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in fields)


class ServerConnection:
    """One connection's request framing and keep-alive state."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._machine = StateMachine(State.IDLE, TRANSITIONS)
        self._go = self._machine.move
        self.head: RequestHead | None = None
        self.keep_alive = True
        self.requests = 0
        self._buffer = b""
        self._body_left = 0
        self._chunked: ChunkedDecoder | None = None
        self._peer_closed = False
        self._max_head = limits.max_request_line + limits.max_header_bytes + 4

    # ----------------------------------------------------------- input

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet (pipelined requests waiting)."""
        return len(self._buffer)

    @property
    def state(self) -> State:
        return self._machine.state

    def receive_data(self, data: bytes) -> list:
        if self.state in (State.ERROR, State.CLOSED):
            return []
        self._buffer = self._buffer + data if self._buffer else data
        return self._process()

    def receive_eof(self) -> list:
        """The client half-closed (or closed). A request being received is
        abandoned; a request being answered is answered, then we close."""
        self._peer_closed = True
        self.keep_alive = False
        if self.state in (State.IDLE, State.HEAD, State.BODY):
            if self.state is not State.IDLE:
                self.head = None
            self._go(State.CLOSED)
            return [Close()]
        return []

    def _error(self, error: BadRequest, line: bytes) -> list:
        self._go(State.ERROR)
        self.keep_alive = False
        self._buffer = b""
        return [ProtocolError(error.status, error.reason, line)]

    def _process(self) -> list:
        events: list = []
        while True:
            state = self.state
            if state is State.IDLE:
                buffer = self._buffer
                if buffer[:1] in (b"\r", b"\n"):
                    # RFC 9112 2.2: ignore empty lines before a request line.
                    buffer = self._buffer = buffer.lstrip(b"\r\n")
                if not buffer:
                    return events
                self._go(State.HEAD)
                events.append(RequestStarted())
            elif state is State.HEAD:
                if not self._parse_head(events):
                    return events
            elif state is State.BODY:
                if not self._parse_body(events):
                    return events
            else:  # DONE: paused until the response is finished
                return events

    def _head_end(self, buffer: bytes) -> tuple[int, int]:
        """(end of the head block, start of what follows), or (-1, -1)."""
        crlf = buffer.find(b"\n\r\n")
        lf = buffer.find(b"\n\n", 0, crlf if crlf >= 0 else len(buffer))
        if lf >= 0:
            return lf, lf + 2
        if crlf >= 0:
            return crlf, crlf + 3
        return -1, -1

    def _parse_head(self, events: list) -> bool:
        buffer = self._buffer
        end, rest = self._head_end(buffer)
        if end < 0:
            first_line_end = buffer.find(b"\n")
            first_line = buffer if first_line_end < 0 else buffer[:first_line_end]
            if not looks_like_request_start(first_line):
                events += self._error(BadRequest(400, "not an HTTP request"), first_line[:200])
                return False
            if len(first_line) > self.limits.max_request_line:
                events += self._error(BadRequest(414, "request line too long"), first_line[:200])
                return False
            if len(buffer) > self._max_head:
                events += self._error(BadRequest(431, "header section too large"), first_line[:200])
                return False
            return False
        block = buffer[:end - 1] if buffer[end - 1:end] == b"\r" else buffer[:end]
        self._buffer = buffer[rest:]
        try:
            head = parse_request_head(block, self.limits)
        except BadRequest as e:
            line_end = block.find(b"\n")
            events += self._error(e, (block if line_end < 0 else block[:line_end]).rstrip(b"\r")[:1024])
            return False
        self.head = head
        self.requests += 1
        self.keep_alive = head.keep_alive and not self._peer_closed
        events.append(RequestReceived(head))
        if head.chunked:
            self._chunked = ChunkedDecoder(self.limits)
            self._go(State.BODY)
        elif head.content_length:
            self._body_left = head.content_length
            self._go(State.BODY)
        else:
            self._go(State.DONE)
            events.append(RequestComplete())
        return True

    def _parse_body(self, events: list) -> bool:
        buffer = self._buffer
        if not buffer:
            return False
        if self._chunked is None:
            take = self._body_left
            if len(buffer) <= take:
                self._buffer = b""
                events.append(BodyData(buffer))
                self._body_left -= len(buffer)
            else:
                self._buffer = buffer[take:]
                events.append(BodyData(buffer[:take]))
                self._body_left = 0
            if self._body_left:
                return False
        else:
            try:
                pieces, used, done = self._chunked.feed(buffer)
            except BadRequest as e:
                events += self._error(e, self.head.request_line if self.head else b"")
                return False
            self._buffer = buffer[used:]
            events.extend(BodyData(p) for p in pieces if p)
            if not done:
                return False
            self._chunked = None
        self._go(State.DONE)
        events.append(RequestComplete())
        return True

    # ----------------------------------------------------------- output

    def informational(self) -> bytes:
        """``100 Continue`` for a request that asked for it (HTTP/1.1 only)."""
        if self.head is None or not self.head.expect_continue or self.state is not State.BODY:
            return b""
        return STATUS_LINES[100] + b"\r\n"

    def response_head(self, status: int, fields: bytes, *, close: bool = False) -> bytes:
        """Status line + *fields* (rendered ``Name: value`` lines, Date included)
        + the Connection field + the empty line.

        A response sent before the request body was fully read, an error, an
        HTTP/1.0 client without keep-alive, or *close* ends the connection.
        """
        if close or self.state is not State.DONE or self._peer_closed:
            self.keep_alive = False
        status_line = STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode("ascii")
        if not self.keep_alive:
            connection = b"Connection: close\r\n\r\n"
        elif self.head is not None and self.head.version == 10:
            connection = b"Connection: keep-alive\r\n\r\n"
        else:
            connection = b"\r\n"
        return status_line + fields + connection

    def response_finished(self) -> list:
        """The response (head and body) has been handed to the transport."""
        if not self.keep_alive or self.state is not State.DONE:
            if self.state is not State.CLOSED:
                self._go(State.CLOSED)
            return [Close()]
        self.head = None
        self._go(State.IDLE)
        return self._process()
