"""Client side of an HTTP/1.1 connection (talking to an upstream server), sans I/O.

One request at a time: :meth:`ClientConnection.start` announces the method
(a HEAD response has no body whatever it says), then ``receive_data`` yields
any number of :class:`InterimResponse` (1xx), one :class:`ResponseReceived`,
the body as :class:`Data` and an :class:`EndOfMessage` saying whether the
connection may be reused. Anything malformed is one :class:`MessageError`
with status 502 and the connection must be closed.

A response ending before its declared length, a chunked body cut short or
bytes arriving after a complete response on an idle connection all make the
connection unusable; an incomplete body is an error (RFC 9112 8), never a
short message that a cache could store as complete.
"""

from __future__ import annotations

from enum import Enum

from twisted_netapps.http.body import NO_BODY, UNTIL_CLOSE, BodyReader, response_framing
from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.http.events import Data, EndOfMessage, InterimResponse, MessageError, ResponseReceived
from twisted_netapps.http.fields import connection_options
from twisted_netapps.http.head import head_end, parse_response_head


# Events are immutable: one instance of each ending serves every response.
_END_REUSABLE = EndOfMessage(reusable=True)
_END_NOT_REUSABLE = EndOfMessage(reusable=False)


class State(Enum):
    IDLE = "no request outstanding"
    HEAD = "awaiting a response head"
    BODY = "receiving a response body"
    FAILED = "unusable"


class ClientConnection:
    def __init__(self, *, max_head: int = 65536, max_fields: int = 200) -> None:
        self.max_head = max_head
        self.max_fields = max_fields
        self.state = State.IDLE
        self._method = b"GET"
        self._buffer = b""
        self._framing = None
        self._body: BodyReader | None = None
        self._reusable = True
        self.received_any = False  # a byte of the current response has arrived

    def start(self, method: bytes) -> None:
        if self.state is not State.IDLE:
            raise RuntimeError(f"cannot start a request while {self.state.value}")
        self._method = method
        self.state = State.HEAD
        self.received_any = False

    def receive_data(self, data: bytes) -> list:
        if not data or self.state is State.FAILED:
            return []
        if self.state is State.IDLE:
            # Nothing was asked: a broken server (or a body longer than its
            # Content-Length). The connection cannot be trusted any more.
            self.state = State.FAILED
            return []
        self.received_any = True
        self._buffer = self._buffer + data if self._buffer else data
        events: list = []
        try:
            while self.state is State.HEAD or self.state is State.BODY:
                if self.state is State.HEAD:
                    if not self._parse_head(events):
                        break
                elif not self._parse_body(events):
                    break
        except ProtocolError as e:
            self.state = State.FAILED
            self._buffer = b""
            events.append(MessageError(e.status, e.detail))
        return events

    def receive_eof(self) -> list:
        """The server closed its side."""
        state, self.state = self.state, State.FAILED
        if state is State.BODY and self._framing.kind == UNTIL_CLOSE:
            return [EndOfMessage(reusable=False)]
        if state is State.HEAD or state is State.BODY:
            return [MessageError(502, "upstream closed the connection before the response was complete")]
        return []

    def _parse_head(self, events: list) -> bool:
        buffer = self._buffer
        if buffer[:1] in (b"\r", b"\n"):
            buffer = self._buffer = buffer.lstrip(b"\r\n")
        found = head_end(buffer)
        if found is None:
            if len(buffer) > self.max_head:
                raise ProtocolError(502, "upstream response head too large")
            return False
        end, after = found
        if end > self.max_head:
            raise ProtocolError(502, "upstream response head too large")
        block = buffer[:end]
        self._buffer = buffer[after:]
        head = parse_response_head(block, max_fields=self.max_fields)
        if head.status < 200:
            if head.status == 101:
                raise ProtocolError(502, "upstream switched protocols unasked")
            events.append(InterimResponse(head))
            return True
        framing = response_framing(self._method, head.status, head.headers)
        options = connection_options(head.headers) if b"connection" in head.headers else set()
        self._reusable = (
            framing.kind != UNTIL_CLOSE
            and b"close" not in options
            and (head.version == b"1.1" or b"keep-alive" in options)
        )
        self._framing = framing
        events.append(ResponseReceived(head, framing))
        if framing.kind == NO_BODY:
            self._finish(events)
        else:
            self.state = State.BODY
            self._body = BodyReader(framing, 502)
        return True

    def _parse_body(self, events: list) -> bool:
        pieces, done, self._buffer = self._body.feed(self._buffer)
        for piece in pieces:
            events.append(Data(piece))
        if done:
            self._body = None
            self._finish(events)
        return False

    def _finish(self, events: list) -> None:
        reusable = self._reusable and not self._buffer
        self.state = State.IDLE if reusable else State.FAILED
        self._buffer = b""
        events.append(_END_REUSABLE if reusable else _END_NOT_REUSABLE)
