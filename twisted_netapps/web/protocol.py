"""The Twisted adapter: one :class:`WebProtocol` per connection over the
sans-I/O :class:`~twisted_netapps.web.connection.ServerConnection`.

It feeds bytes to the core, runs the handler the site picks for each request,
writes responses in order (pipelined responses produced in one read go out
in one write), streams large files with a pull producer (never a whole file
in memory), and keeps three clocks:

- *idle*: no request in progress (keep-alive), or a response the client
  stopped reading: the connection is closed (no 408: a client may be about
  to reuse it, RFC 9112 9.5);
- *header*: from the first byte of a request to the end of its header
  section: 408 and close (a slowloris client cannot trickle forever);
- *request*: from the first byte to the end of the body: 408 and close.
"""

from __future__ import annotations

import os
from collections import deque

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_netapps.addresses import host_of
from twisted_netapps.deadlines import Deadline
from twisted_netapps.http.dates import format_http_date
from twisted_netapps.http.events import Data, EndOfMessage, MessageError
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.ratelimit import ThrottledConsumer
from twisted_netapps.sansio import Close
from twisted_netapps.web.accesslog import AccessLog
from twisted_netapps.web.connection import RequestReceived, ServerConnection, State
from twisted_netapps.web.messages import BodyReader, FileRegions, Request, Response, error_response
from twisted_netapps.web.wire import Limits

log = Logger(namespace="netapps.web")

STREAM_CHUNK = 256 * 1024
PIPELINE_BUFFER = 64 * 1024  # unparsed pipelined bytes before we stop reading
DISCARD_LIMIT = 64 * 1024  # an unwanted request body up to this is read and dropped; more: close
_STATUS_COUNTER = {2: "responses_2xx", 3: "responses_3xx", 4: "responses_4xx", 5: "responses_5xx"}


class WebFactory(protocol.Factory):
    noisy = False

    def __init__(self, site, *, clock, stats, access_log: AccessLog | None, limits: Limits,
                 idle_timeout: float, header_timeout: float, request_timeout: float, server: bytes,
                 recent=NULL_RECENT, upload_buckets=None) -> None:
        self.site = site
        self.upload_buckets = upload_buckets  # [TokenBucket] shared by every connection, or None
        self.recent = recent  # the status page's live events (a no-op without one)
        self.clock = clock
        self.stats = stats
        self.access_log = access_log
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.request_timeout = request_timeout
        self.server = server
        self._second = -1
        self._date_and_server = b""

    def date_and_server(self, now: float) -> bytes:
        """The Date and Server fields, rendered once per second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._date_and_server = b"Date: " + format_http_date(second) + b"\r\nServer: " + self.server + b"\r\n"
        return self._date_and_server

    def buildProtocol(self, addr):
        p = WebProtocol(self)
        p.factory = self
        return p


@implementer(interfaces.IPullProducer)
class RegionStreamer:
    """Sends a :class:`FileRegions` body in chunks as the transport drains."""

    def __init__(self, proto: "WebProtocol", response: Response, regions: FileRegions) -> None:
        self.proto = proto
        self.response = response
        self.regions = regions
        self.pieces = deque(regions.pieces)
        self.sent = 0

    def resumeProducing(self) -> None:
        proto = self.proto
        proto.idle.restart()  # the client is reading: a stall is measured from here
        fd = self.regions.version.fd
        out = []
        budget = STREAM_CHUNK
        while budget > 0 and self.pieces:
            piece = self.pieces[0]
            if isinstance(piece, bytes):
                out.append(piece)
                budget -= len(piece)
                self.pieces.popleft()
                continue
            offset, length = piece
            data = os.pread(fd, min(budget, length), offset)
            if not data:
                # The file shrank while being sent: the promised length cannot be met.
                log.warn("web: {path} shrank while being sent; connection aborted", path=self.regions.version.path)
                self.regions.close()
                proto.out.unregisterProducer()
                proto.abort()
                return
            out.append(data)
            budget -= len(data)
            if len(data) == length:
                self.pieces.popleft()
            else:
                self.pieces[0] = (offset + len(data), length - len(data))
        if out:
            data = b"".join(out)
            self.sent += len(data)
            proto.f.stats.incr("bytes_out", len(data))  # streamed bodies count too
            proto.out.write(data)
        if not self.pieces:
            self.regions.close()
            proto.out.unregisterProducer()
            proto.streamer = None
            proto.response_done(self.response, self.regions.length)

    def stopProducing(self) -> None:
        self.regions.close()


@implementer(interfaces.IHalfCloseableProtocol)
class WebProtocol(protocol.Protocol):
    def __init__(self, factory: WebFactory) -> None:
        self.f = factory
        self.core = ServerConnection(factory.limits)
        clock = factory.clock
        self.idle = Deadline(clock, factory.idle_timeout, self._idle_expired)
        self.header_deadline = Deadline(clock, factory.header_timeout, self._header_expired)
        self.request_deadline = Deadline(clock, factory.request_timeout, self._request_expired)
        self.peer_host = "-"
        self.request: Request | None = None
        self.reader: BodyReader | None = None
        self.pending = None  # the handling of a request whose (discarded) body is still arriving
        self.answered_early = False  # responded before the body was read: the connection closes
        self.body_size = 0
        self.streamer: RegionStreamer | None = None
        self.out = None  # the transport, or a ThrottledConsumer in front of it (set on connect)
        self.lost = False
        self._events: deque = deque()
        self._running = False
        self._out: list[bytes] = []
        self._batching = False
        self._reading_paused = False

    # ------------------------------------------------------------ transport

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP
        self.peer_host = host_of(self.transport.getPeer())
        # With an upload cap (the distribution experiment's u_s), everything
        # this connection sends goes through one bucket shared by all of them.
        buckets = self.f.upload_buckets
        self.out = self.transport if not buckets else ThrottledConsumer(self.transport, buckets, self.f.clock)
        self.idle.start()

    def dataReceived(self, data: bytes) -> None:
        self.f.stats.incr("bytes_in", len(data))
        self._batching = True
        try:
            self._run(self.core.receive_data(data))
        finally:
            self._batching = False
        self._flush()
        if self.core.buffered > PIPELINE_BUFFER and not self._reading_paused and not self.lost:
            self._reading_paused = True
            self.transport.pauseProducing()

    def readConnectionLost(self) -> None:
        self._run(self.core.receive_eof())

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def close(self) -> None:
        """Close once everything written has gone out (through the upload cap, if any)."""
        if self.out is self.transport:
            self.transport.loseConnection()
        else:
            self.out.when_drained().addCallback(lambda _: self.transport.loseConnection())

    def abort(self) -> None:
        if self.out is not self.transport:
            self.out.close()
        self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        self.lost = True
        if self.out is not self.transport:
            self.out.close()
        for deadline in (self.idle, self.header_deadline, self.request_deadline):
            deadline.cancel()
        if self.reader is not None:
            self.reader.abort()
            self.reader = None

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        if not self._batching:
            self._flush()

    def _flush(self) -> None:
        if self._out and not self.lost:
            data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
            self.f.stats.incr("bytes_out", len(data))
            self.out.write(data)
        self._out.clear()

    # ------------------------------------------------------------ events

    def _run(self, events: list) -> None:
        """Handle core events in order; re-entrant calls queue (no recursion
        per pipelined request)."""
        self._events.extend(events)
        if self._running:
            return
        self._running = True
        try:
            while self._events:
                event = self._events.popleft()
                kind = type(event)
                if kind is RequestReceived:
                    self._begin(event.head)
                elif kind is Data:
                    self._body(event.data)
                elif kind is EndOfMessage:
                    self._complete()
                elif kind is MessageError:
                    self._protocol_error(event.status, event.detail, self.core.request_line)
                elif kind is Close:
                    self._flush()
                    self.close()
        finally:
            self._running = False
        if not self.lost:
            self._arm_timers()

    def _arm_timers(self) -> None:
        """Set the clocks for the state the core is left in. Armed only when a
        request stays incomplete past the read that started it (most arrive
        whole in one read: no timer is started and cancelled for them);
        starting them then rather than at the first byte differs by the time
        of one read's processing."""
        state = self.core.state
        if state is State.IDLE:
            self.idle.restart()
            if self.header_deadline.active:
                self.header_deadline.cancel()
            if self.request_deadline.active:
                self.request_deadline.cancel()
            return
        if self.idle.active and self.streamer is None:
            self.idle.cancel()
        if state is State.HEAD:
            self.header_deadline.start()  # no-op when already running
            self.request_deadline.start()
        elif state is State.BODY:
            if self.header_deadline.active:
                self.header_deadline.cancel()
            self.request_deadline.start()
        else:  # DONE, ERROR, CLOSED: the client has nothing more to send for now
            if self.header_deadline.active:
                self.header_deadline.cancel()
            if self.request_deadline.active:
                self.request_deadline.cancel()

    def _begin(self, head) -> None:
        f = self.f
        f.stats.incr("requests")
        request = self.request = Request(head, self.peer_host, f.clock.seconds())
        self.body_size = 0
        self.answered_early = False
        handling = f.site.handle(request, self.peer_host)
        if isinstance(handling, BodyReader):
            if head.content_length is not None and head.content_length > handling.max_size:
                handling.abort()
                self._answer_early(error_response(413, f"The body may be at most {handling.max_size} bytes."))
                return
            self.reader = handling
            if head.expect_continue:
                ready = handling.ready()
                if ready is None:
                    self._write(self.core.informational())
                else:
                    ready.addCallback(self._continue_or_refuse, request)
            return
        if head.has_body and (head.chunked or head.content_length > DISCARD_LIMIT or head.expect_continue):
            self._answer_early(handling)
        else:
            self.pending = handling

    def _continue_or_refuse(self, refusal, request: Request) -> None:
        if self.lost or request is not self.request or self.reader is None:
            return
        if refusal is None:
            self._write(self.core.informational())
        else:
            self.reader.abort()
            self.reader = None
            self._answer_early(refusal)

    def _answer_early(self, handling) -> None:
        """Respond before reading the body; the connection closes after."""
        self.answered_early = True
        self.pending = None
        self._respond(handling, close=True)

    def _body(self, data: bytes) -> None:
        reader = self.reader
        if reader is None:
            return  # a body nobody wants: dropped
        self.body_size += len(data)
        if self.body_size > reader.max_size:
            reader.abort()
            self.reader = None
            self._answer_early(error_response(413, f"The body may be at most {reader.max_size} bytes."))
            return
        reader.data(data)

    def _complete(self) -> None:
        if self.answered_early:
            return
        if self.reader is not None:
            reader, self.reader = self.reader, None
            self._respond(reader.finish())
        else:
            handling, self.pending = self.pending, None
            self._respond(handling)

    def _protocol_error(self, status: int, reason: str, request_line: bytes) -> None:
        self.f.stats.incr("bad_requests")
        log.info("web: {peer}: {status} {reason}", peer=self.peer_host, status=status, reason=reason)
        self.request = None
        self._send(error_response(status, reason, close=True), request_line=request_line)

    # ------------------------------------------------------------ responses

    def _respond(self, handling, close: bool = False) -> None:
        if isinstance(handling, defer.Deferred):
            request = self.request
            handling.addCallbacks(self._send_async, self._handler_failed,
                                  callbackArgs=(request, close), errbackArgs=(request, close))
        else:
            self._send(handling, close=close)

    def _send_async(self, response: Response, request: Request, close: bool) -> None:
        if self.lost or request is not self.request:
            response.discard_body()
            return
        self._send(response, close=close)

    def _handler_failed(self, failure: Failure, request: Request, close: bool) -> None:
        log.failure("web: {peer}: {line}: handler failed", failure, peer=self.peer_host,
                    line=request.head.request_line.decode("latin-1") if request else "")
        self._send_async(error_response(500, "The server failed to answer."), request, close)

    def _send(self, response: Response, close: bool = False, request_line: bytes | None = None) -> None:
        f = self.f
        status = response.status
        fields = response.fields + f.date_and_server(f.clock.seconds())
        bodyless = status in (204, 304) or status < 200
        if not bodyless:
            fields += b"Content-Length: %d\r\n" % response.length
        head = self.core.response_head(status, fields, close=response.close or close)
        request = self.request
        body = response.body
        if bodyless or not body or (request is not None and request.method == "HEAD"):
            response.discard_body()
            self._write(head)
            self.response_done(response, 0, request_line)
        elif isinstance(body, bytes):
            self._write(head)
            self._write(body)
            self.response_done(response, len(body), request_line)
        else:
            self._write(head)
            self._flush()
            self.streamer = RegionStreamer(self, response, body)
            self.out.registerProducer(self.streamer, False)

    def response_done(self, response: Response, body_bytes: int, request_line: bytes | None = None) -> None:
        f = self.f
        request = self.request
        self.request = None
        stats = f.stats
        status = response.status
        stats.incr(_STATUS_COUNTER[status // 100])
        if status >= 500:
            stats.incr("errors")
        for name, amount in response.extra.items():
            stats.incr(name, amount)
        if request is not None and f.recent is not NULL_RECENT and f.recent.wants():
            # (the fields are built only for the events kept: at most 100 a second)
            f.recent.add("request", peer=self.peer_host, method=request.method,
                         target=request.head.target.decode("latin-1")[:200], status=status, bytes=body_bytes)
        if f.access_log is not None:
            if request is not None:
                headers = request.head.headers
                f.access_log.log(self.peer_host, request.user or response.user, request.now,
                                 request.head.request_line, status, body_bytes,
                                 headers.get(b"referer"), headers.get(b"user-agent"))
            else:
                f.access_log.log(self.peer_host, None, f.clock.seconds(), request_line or b"", status, body_bytes, None, None)
        self._run(self.core.response_finished())
        if self._reading_paused and self.core.buffered <= PIPELINE_BUFFER and not self.lost:
            self._reading_paused = False
            self.transport.resumeProducing()

    # ------------------------------------------------------------ timers

    def _idle_expired(self) -> None:
        if self.streamer is not None:
            log.info("web: {peer}: not reading the response; connection aborted", peer=self.peer_host)
            self.f.stats.incr("timeouts")
            self.abort()
        elif self.core.state is State.IDLE:
            self.close()

    def _header_expired(self) -> None:
        self._timed_out("request header")

    def _request_expired(self) -> None:
        if self.core.state in (State.HEAD, State.BODY):
            self._timed_out("request")

    def _timed_out(self, what: str) -> None:
        self.f.stats.incr("timeouts")
        log.info("web: {peer}: {what} not received in time; 408", peer=self.peer_host, what=what)
        if self.reader is not None:
            self.reader.abort()
            self.reader = None
        if self.answered_early:
            self.close()
            return
        self.answered_early = True
        line = self.request.head.request_line if self.request is not None else b""
        self.request = None
        self._send(error_response(408, f"The {what} took too long.", close=True), request_line=line)
        self._flush()
