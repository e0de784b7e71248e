"""Connections to origin servers: one request at a time each, reused from a pool.

Twisted's stock proxies open a new HTTP/1.0 connection per request; here a
connection that ended its response cleanly (complete body, no ``close``,
nothing extra after it) goes back to an idle pool per origin and carries
the next request. Idle connections are closed after ``idle_timeout`` and
beyond ``max_idle`` per origin.

A pooled connection may have been closed by the origin just as we reuse it.
Such a request (GET or HEAD without a body, nothing received yet) is retried
once on a new connection -- what browsers do; other methods are never
replayed, since the origin may have acted on them.

Name resolution: the system resolver (``HostnameEndpoint``), or a DNS server
of our own choosing such as the daemon's ``resolver`` service. IP literals
are connected to directly.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol as Interface

from twisted.internet import defer, endpoints, error, protocol
from twisted.logger import Logger
from twisted.names import client as dns_client
from twisted.names import error as dns_error

from twisted_netapps.http.client import ClientConnection
from twisted_netapps.http.events import Data, EndOfMessage, InterimResponse, MessageError, ResponseReceived

log = Logger(namespace="netapps.proxy")


class ResponseHandler(Interface):
    def interim(self, head) -> None: ...
    def response(self, head, framing) -> None: ...
    def data(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    def failed(self, status: int, detail: str) -> None:
        """No (complete) response: 502 for a broken one, 504 for no answer."""


class OriginConnection(protocol.Protocol):
    def __init__(self, pool: "OriginPool", origin: tuple[str, int]) -> None:
        self.pool = pool
        self.origin = origin
        self.core = ClientConnection(max_head=pool.max_head)
        self.handler: ResponseHandler | None = None
        self.reused = False
        self._timer = None
        self.last_activity = 0.0
        self.idle_since = 0.0
        self.closed = False

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def send(self, method: bytes, head: bytes, handler: ResponseHandler) -> None:
        self.handler = handler
        self.core.start(method)
        self.last_activity = self.pool.reactor.seconds()
        if self._timer is None:
            self._timer = self.pool.reactor.callLater(self.pool.response_timeout, self._check_progress)
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def _check_progress(self) -> None:
        """The response deadline: no byte for ``response_timeout`` is a 504.

        One call per interval, not one per packet: activity only moves
        ``last_activity`` and the call re-arms itself for the time left.
        """
        self._timer = None
        if self.handler is None:
            return  # idle between requests: the pool's business
        left = self.last_activity + self.pool.response_timeout - self.pool.reactor.seconds()
        if left > 0:
            self._timer = self.pool.reactor.callLater(left, self._check_progress)
            return
        handler, self.handler = self.handler, None
        self.transport.abortConnection()
        handler.failed(504, f"no answer from {self.origin[0]}:{self.origin[1]} in time")

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes) -> None:
        if self.handler is None:
            self.core.receive_data(data)  # bytes on an idle connection: unusable now
            self.transport.abortConnection()
            return
        self.last_activity = self.pool.reactor.seconds()
        self._dispatch(self.core.receive_data(data))

    def _dispatch(self, events: list) -> None:
        for event in events:
            handler = self.handler
            if handler is None:
                return
            if type(event) is Data:
                handler.data(event.data)
            elif type(event) is ResponseReceived:
                handler.response(event.head, event.framing)
            elif type(event) is InterimResponse:
                handler.interim(event.head)
            elif type(event) is EndOfMessage:
                self.handler = None
                if event.reusable:
                    self.pool.release(self)
                else:
                    self.transport.loseConnection()
                handler.end()
            elif type(event) is MessageError:
                self.handler = None
                self._stop_timer()
                self.transport.abortConnection()
                handler.failed(event.status, event.detail)

    def pause(self) -> None:
        self.transport.pauseProducing()

    def resume(self) -> None:
        self.transport.resumeProducing()

    def abort(self) -> None:
        """Give up on the current response (nobody wants it any more)."""
        self.handler = None
        self._stop_timer()
        self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        self.closed = True
        self._stop_timer()
        self.pool.forget(self)
        if self.handler is None:
            return
        received_any = self.core.received_any
        self._dispatch(self.core.receive_eof())
        handler, self.handler = self.handler, None
        if handler is not None:
            if self.reused and not received_any:
                handler.failed(0, "reused connection closed by the origin")  # 0: retry
            else:
                handler.failed(502, f"{self.origin[0]}:{self.origin[1]} closed the connection")


class _Factory(protocol.Factory):
    noisy = False

    def __init__(self, pool: "OriginPool", origin: tuple[str, int]) -> None:
        self.pool = pool
        self.origin = origin

    def buildProtocol(self, addr):
        return OriginConnection(self.pool, self.origin)


class Connector:
    """Opens TCP connections to ``host:port``, resolving names as configured."""

    def __init__(self, reactor, *, connect_timeout: float, dns_server: tuple[str, int] | None = None) -> None:
        self.reactor = reactor
        self.connect_timeout = connect_timeout
        self.resolver = None
        if dns_server is not None:
            self.resolver = dns_client.Resolver(servers=[dns_server], reactor=reactor)

    @defer.inlineCallbacks
    def connect(self, host: str, port: int, factory):
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None and self.resolver is not None:
            try:
                resolved = yield self.resolver.getHostByName(host)
                address = ipaddress.ip_address(resolved)
            except (dns_error.DomainError, dns_error.AuthoritativeDomainError, dns_error.TimeoutError,
                    dns_error.ResolverError, ValueError) as e:
                raise error.DNSLookupError(f"{host}: {e.__class__.__name__}") from None
            host = resolved
        if address is None:
            endpoint = endpoints.HostnameEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        elif address.version == 6:
            endpoint = endpoints.TCP6ClientEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        else:
            endpoint = endpoints.TCP4ClientEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        connection = yield endpoint.connect(factory)
        return connection


# A request that cannot be sent twice (a POST, anything with a body) only
# reuses a connection that has been idle less than this: origins close idle
# connections after a few seconds (Node.js after 5), and a request sent just
# as that happens is lost, with no safe retry.
UNSAFE_REUSE_AGE = 2.0

CONNECT_ERRORS = (error.ConnectError, error.DNSLookupError, error.TimeoutError, OSError, defer.CancelledError)


class OriginPool:
    def __init__(
        self,
        reactor,
        connector: Connector,
        *,
        max_idle: int = 128,
        idle_timeout: float = 15.0,
        response_timeout: float = 60.0,
        max_head: int = 65536,
    ) -> None:
        self.reactor = reactor
        self.connector = connector
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.response_timeout = response_timeout
        self.max_head = max_head
        self._idle: dict[tuple[str, int], list[OriginConnection]] = {}
        self._sweeper = None
        self.opened = 0
        self.reuses = 0

    def take_idle(self, host: str, port: int, max_idle_age: float | None = None) -> OriginConnection | None:
        """An idle connection to the origin, if the pool has one (no Deferred on this hot path).

        *max_idle_age*: only one that has been idle for less than this many
        seconds (for requests that cannot be retried: the longer a connection
        sat idle, the likelier the origin is closing it right now).
        """
        idle = self._idle.get((host, port))
        now = self.reactor.seconds()
        while idle:
            connection = idle.pop()
            if max_idle_age is not None and now - connection.idle_since > max_idle_age:
                connection.transport.loseConnection()
                continue
            if not connection.closed:
                connection.reused = True
                self.reuses += 1
                return connection
        return None

    def open(self, host: str, port: int) -> defer.Deferred:
        self.opened += 1
        return self.connector.connect(host, port, _Factory(self, (host, port)))

    def release(self, connection: OriginConnection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= self.max_idle:
            connection.transport.loseConnection()
            return
        connection.idle_since = self.reactor.seconds()
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = self.reactor.callLater(self.idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for ``idle_timeout`` (one timer for the whole pool)."""
        self._sweeper = None
        now = self.reactor.seconds()
        oldest = None
        for idle in self._idle.values():
            for connection in list(idle):
                if now - connection.idle_since >= self.idle_timeout:
                    idle.remove(connection)
                    connection.transport.loseConnection()
                elif oldest is None or connection.idle_since < oldest:
                    oldest = connection.idle_since
        if oldest is not None:
            self._sweeper = self.reactor.callLater(oldest + self.idle_timeout - now, self._sweep)

    def forget(self, connection: OriginConnection) -> None:
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    def close_all(self) -> None:
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        for idle in self._idle.values():
            for connection in idle:
                connection.transport.loseConnection()
        self._idle.clear()


class UpstreamRequest:
    """One request to an origin with its response delivered to *handler*.

    The head is sent at once; a body, if any, follows through :meth:`write`
    (already framed by the caller). A GET/HEAD without body that finds its
    pooled connection dead is sent again once on a new connection.
    """

    __slots__ = ("pool", "host", "port", "method", "head", "handler", "has_body", "connection", "cancelled",
                 "_pending", "_retried", "_body_producer", "_early_body", "_held_producer")

    def __init__(self, pool: OriginPool, host: str, port: int, method: bytes, head: bytes,
                 handler: ResponseHandler, *, has_body: bool = False) -> None:
        self.pool = pool
        self.host = host
        self.port = port
        self.method = method
        self.head = head
        self.handler = handler
        self.has_body = has_body
        self.connection: OriginConnection | None = None
        self.cancelled = False
        self._pending: defer.Deferred | None = None
        self._retried = False
        self._body_producer = None
        # Body bytes that arrive (often in the same packet as the head) before
        # the origin connection is up: kept here, the client paused meanwhile.
        self._early_body: list[bytes] = []
        self._held_producer = None

    def start(self) -> None:
        connection = self.pool.take_idle(self.host, self.port, None if self._retryable() else UNSAFE_REUSE_AGE)
        if connection is not None:
            self._connected(connection)
        else:
            self._connect(self.pool.open(self.host, self.port))

    def _connect(self, d: defer.Deferred) -> None:
        self._pending = d
        d.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: OriginConnection) -> None:
        self._pending = None
        if self.cancelled:
            connection.transport.loseConnection()
            return
        self.connection = connection
        connection.send(self.method, self.head, _Relay(self))
        if self._early_body:
            connection.write(b"".join(self._early_body))
            self._early_body = []
        if self._body_producer is not None:
            connection.transport.registerProducer(self._body_producer, True)
        self._release_client()

    def _release_client(self) -> None:
        """Resume reading from a client paused while its body waited for the connection."""
        if self._held_producer is not None:
            held, self._held_producer = self._held_producer, None
            held.resumeProducing()

    def _connect_failed(self, failure) -> None:
        self._pending = None
        self._early_body = []
        self._release_client()
        if self.cancelled:
            return
        if failure.check(error.DNSLookupError):
            self.handler.failed(502, f"cannot resolve {self.host}")
        elif failure.check(error.TimeoutError, defer.CancelledError):
            self.handler.failed(504, f"connecting to {self.host}:{self.port} timed out")
        elif failure.check(*CONNECT_ERRORS):
            self.handler.failed(502, f"cannot connect to {self.host}:{self.port}: {failure.getErrorMessage()}")
        else:
            log.warn("proxy: connecting to {host}:{port} failed: {kind}: {error}", host=self.host, port=self.port,
                     kind=failure.type.__name__, error=failure.getErrorMessage())
            self.handler.failed(502, f"cannot connect to {self.host}:{self.port}")

    def _retryable(self) -> bool:
        return not self.has_body and self.method in (b"GET", b"HEAD")

    def _failed(self, status: int, detail: str) -> None:
        if status == 0:
            if not self._retried and self._retryable() and not self.cancelled:
                self._retried = True
                self.connection = None
                self._connect(self.pool.open(self.host, self.port))
                return
            status = 502
        self.handler.failed(status, detail)

    def write(self, data: bytes) -> None:
        if self.connection is not None:
            if not self.connection.closed:
                self.connection.write(data)
        elif not self.cancelled:
            # Not connected yet: keep the bytes and stop reading from the
            # client until the connection is up (bounded by one read).
            self._early_body.append(data)
            if self._body_producer is not None and self._held_producer is None:
                self._held_producer = self._body_producer
                self._held_producer.pauseProducing()

    def register_body_producer(self, producer) -> None:
        """Let the origin's send buffer pace the client sending the request body."""
        self._body_producer = producer
        if self.connection is not None:
            self.connection.transport.registerProducer(producer, True)

    def body_done(self) -> None:
        if self._body_producer is not None and self.connection is not None and not self.connection.closed:
            self.connection.transport.unregisterProducer()
        self._body_producer = None

    def pause(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.pause()

    def resume(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.resume()

    def cancel(self) -> None:
        self.cancelled = True
        self._early_body = []
        self._release_client()
        if self._pending is not None:
            self._pending.cancel()
        if self.connection is not None and self.connection.handler is not None:
            self.connection.abort()


class _Relay:
    """Passes a connection's events to the request's handler (and catches the retry case)."""

    __slots__ = ("request",)

    def __init__(self, request: UpstreamRequest) -> None:
        self.request = request

    def interim(self, head) -> None:
        self.request.handler.interim(head)

    def response(self, head, framing) -> None:
        self.request.handler.response(head, framing)

    def data(self, data: bytes) -> None:
        self.request.handler.data(data)

    def end(self) -> None:
        self.request.body_done()
        self.request.connection = None
        self.request.handler.end()

    def failed(self, status: int, detail: str) -> None:
        self.request._failed(status, detail)
