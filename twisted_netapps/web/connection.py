"""The server side of one HTTP/1.1 connection for the web service, sans-I/O.

The framing -- request heads, bodies, pipelining, the limits and the
smuggling defences -- is the shared core
:class:`twisted_netapps.http.server.ServerConnection`. This class adds what
the origin server decides around it: the handlers' view of each request
(:func:`~twisted_netapps.web.wire.request_view`), the interim 100 Continue,
response heads with the keep-alive decision, and the states the adapter's
clocks follow.

It gives the adapter :class:`RequestReceived` (the view), then the body as
:class:`~twisted_netapps.http.events.Data` and an
:class:`~twisted_netapps.http.events.EndOfMessage`; bad input is one
:class:`~twisted_netapps.http.events.MessageError` (answer it, then close).
Requests are handled strictly one at a time, in order: after the end of a
request nothing more is parsed until the adapter says the response is
finished (:meth:`~ServerConnection.response_finished`), which then yields
the next pipelined request already buffered; :attr:`~ServerConnection.buffered`
lets the adapter stop reading while that grows.

Time is never read here: :attr:`~ServerConnection.state` says whether a
request is left incomplete (HEAD, BODY) after a read, and the adapter counts
its header and request deadlines from there -- what defeats a slowloris
client that an idle timer alone would let trickle forever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted_netapps.http import server as http_server
from twisted_netapps.http.events import END_OF_REQUEST, MessageError
from twisted_netapps.http.events import RequestReceived as HeadReceived
from twisted_netapps.sansio import Close
from twisted_netapps.web.wire import BadRequest, Limits, RequestHead, request_view

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
class RequestReceived:
    """A complete, valid request head, as the handlers see it."""

    head: RequestHead


# ------------------------------------------------------------------ states


class State(enum.Enum):
    IDLE = "idle"  # between requests
    HEAD = "head"  # receiving a request line and header section
    BODY = "body"  # receiving a request body
    DONE = "done"  # request complete, its response not finished yet
    ERROR = "error"  # a MessageError was given; only its reply may be sent
    CLOSED = "closed"


_CORE_HEAD = http_server.State.HEAD
_FROM_CORE = {
    http_server.State.BODY: State.BODY,
    http_server.State.RESPONDING: State.DONE,
    http_server.State.FAILED: State.ERROR,
    http_server.State.TUNNEL: State.ERROR,  # never entered: this server does not tunnel
}


def render_fields(fields) -> bytes:
    """``Name: value\\r\\n`` lines for (name, value) pairs of bytes."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in fields)


class ServerConnection:
    """One connection's request framing and keep-alive state."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._core = http_server.ServerConnection(
            max_request_line=limits.max_request_line,
            max_field_section=limits.max_header_bytes,
            max_fields=limits.max_headers,
        )
        self.head: RequestHead | None = None
        self.keep_alive = True
        self._refused = False  # a request the view refused (ERROR)
        self._closed = False
        self._peer_closed = False
        self.state = State.IDLE  # kept in step after every input and every finished response

    # ----------------------------------------------------------- input

    @property
    def requests(self) -> int:
        return self._core.requests

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet (pipelined requests waiting)."""
        return self._core.buffered

    @property
    def request_line(self) -> bytes:
        """The current request's line, or what arrived of it (for the log)."""
        return self._core.request_line

    def _sync(self) -> None:
        if self._closed:
            self.state = State.CLOSED
        elif self._refused:
            self.state = State.ERROR
        else:
            core = self._core
            state = core.state
            if state is _CORE_HEAD:
                self.state = State.HEAD if core.head_started else State.IDLE
            else:
                self.state = _FROM_CORE[state]

    def receive_data(self, data: bytes) -> list:
        if self._closed or self._refused:
            return []
        events = self._translate(self._core.receive_data(data))
        self._sync()
        return events

    def _translate(self, events: list) -> list:
        out: list = []
        for event in events:
            if type(event) is HeadReceived:
                head = event.head
                keep_alive = event.keep_alive and head.method != b"CONNECT"
                try:
                    view = request_view(head, event.framing, keep_alive, self._core.request_line)
                except BadRequest as e:
                    self._refused = True
                    self.keep_alive = False
                    out.append(MessageError(e.status, e.reason))
                    return out
                self.head = view
                self.keep_alive = keep_alive and not self._peer_closed
                out.append(RequestReceived(view))
                if head.method == b"CONNECT":  # no body, whatever it says; answered, then closed
                    out.append(END_OF_REQUEST)
            else:
                if type(event) is MessageError:
                    self.keep_alive = False
                out.append(event)
        return out

    def receive_eof(self) -> list:
        """The client half-closed (or closed). A request being received is
        abandoned; a request being answered is answered, then we close."""
        self._peer_closed = True
        self.keep_alive = False
        state = self.state
        if state in (State.IDLE, State.HEAD, State.BODY):
            if state is not State.IDLE:
                self.head = None
            self._closed = True
            self.state = State.CLOSED
            return [Close()]
        return []

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
            self._closed = True
            self.state = State.CLOSED
            return [Close()]
        self.head = None
        events = self._translate(self._core.next_request())
        self._sync()
        return events
