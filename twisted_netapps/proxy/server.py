"""The client side of the proxy: a thin Twisted adapter around :class:`http.server.ServerConnection`.

Per connection: requests are answered one after another in order (pipelined
ones wait in the core, whose buffer is bounded by pausing the socket); the
response to each comes from an :class:`Exchange`. Deadlines:

- header: a request head must be complete within ``header_timeout`` of its
  first byte (a slowloris client trickling bytes gets 408 and the close);
- idle: a keep-alive connection with no request for ``idle_timeout`` closes;
- body: a request body that stalls for ``body_timeout`` ends the connection;
- send: a client that stops reading for ``send_timeout`` while we have data
  for it is disconnected (this protocol is the transport's producer, so a
  full send buffer pauses the origin or disk read instead of buffering).

Clients outside ``allow`` get a 403 and the close: this is not an open proxy.
"""

from __future__ import annotations

import ipaddress
from collections import deque

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps.addresses import format_peer
from twisted_netapps.deadlines import Deadline
from twisted_netapps.http.events import Data, EndOfMessage, MessageError, RequestReceived
from twisted_netapps.http.server import ServerConnection, State
from twisted_netapps.proxy import responses
from twisted_netapps.proxy.exchange import Exchange
from twisted_netapps.proxy.tunnel import start_tunnel

log = Logger(namespace="netapps.proxy")


class IdleTimer:
    """Closes a connection that stayed silent for *seconds*, cheaply.

    Restarting a timer for every request costs a DelayedCall and a heap
    operation each time; this one only records the time of the last activity
    (:meth:`touch`) and, when its single call fires, either gives up the
    connection or sleeps for the time that is left.
    """

    def __init__(self, clock, seconds: float, on_idle) -> None:
        self.clock = clock
        self.seconds = seconds
        self.on_idle = on_idle
        self.last = 0.0
        self._call = None

    def touch(self) -> None:
        self.last = self.clock.seconds()
        if self._call is None:
            self._call = self.clock.callLater(self.seconds, self._check)

    def _check(self) -> None:
        self._call = None
        left = self.last + self.seconds - self.clock.seconds()
        if left > 0:
            self._call = self.clock.callLater(left, self._check)
        elif not self.on_idle():
            self.touch()  # busy: count again from now

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


@implementer(interfaces.IPushProducer)
class ProxyServerProtocol(protocol.Protocol):
    def __init__(self, factory: "ProxyFactory") -> None:
        self.factory = factory
        self.engine = factory.engine
        self.limits = limits = factory.engine.limits
        self.core = ServerConnection(
            max_request_line=limits.max_request_line, max_field_section=limits.max_field_section, max_fields=limits.max_fields,
        )
        self.exchange: Exchange | None = None
        self.closing = False
        self.close_after_response = False
        self.tunnel = None
        self._events: deque = deque()
        self._processing = False
        self._reading_paused = False
        self.gone = False
        clock = factory.engine.reactor
        self.idle = IdleTimer(clock, limits.idle_timeout, self._idle_expired)
        self.header_deadline = Deadline(clock, limits.header_timeout, lambda: self._timed_out("header"))
        self.body_deadline = Deadline(clock, limits.body_timeout, lambda: self._timed_out("body"))
        self.send_deadline = Deadline(clock, limits.send_timeout, self._send_stalled)

    # -- connection lifetime ----------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self.idle.touch()

    def connectionLost(self, reason) -> None:
        self.gone = True
        self.factory.connections.discard(self)
        for deadline in (self.idle, self.header_deadline, self.body_deadline, self.send_deadline):
            deadline.cancel()
        if self.exchange is not None:
            self.exchange.connection_lost()
            self.exchange = None
        if self.tunnel is not None:
            self.tunnel.client_lost()

    # -- input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.engine.stats.incr("bytes_in", len(data))
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self.closing:
            return
        self._process(self.core.receive_data(data))
        if self.gone or self.closing:
            return
        if self.core.state is State.HEAD and self.exchange is None and self.core.head_started:
            self.header_deadline.start()  # counted from the first byte of the head
        elif self.core.state is State.BODY:
            self.body_deadline.restart()
        if self.core.buffered > self.limits.max_pipelined and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()

    def _process(self, events: list) -> None:
        self._events.extend(events)
        if self._processing:
            return
        self._processing = True
        try:
            while self._events and not self.gone:
                event = self._events.popleft()
                kind = type(event)
                if kind is RequestReceived:
                    self._request(event)
                elif kind is Data:
                    if self.exchange is not None:
                        self.exchange.request_data(event.data)
                elif kind is EndOfMessage:
                    self.body_deadline.cancel()
                    if self.exchange is not None:
                        self.exchange.request_end()
                elif kind is MessageError:
                    self._protocol_error(event)
        finally:
            self._processing = False

    def _request(self, event: RequestReceived) -> None:
        self.header_deadline.cancel()
        self.engine.stats.incr("requests")
        head = event.head
        if event.framing.kind == "none" and self.engine.fast_hit(self, head, event.keep_alive):
            self._response_done(event.keep_alive, True)
            return
        if head.method == b"CONNECT":
            self.transport.unregisterProducer()
            self.tunnel = start_tunnel(self, head)
            if self.tunnel is None:
                self.closing = True
            return
        if not event.keep_alive:
            self.close_after_response = True
        self.exchange = Exchange(self, self.engine, head, event.framing, event.keep_alive)
        if event.framing.kind != "none":
            self.body_deadline.restart()
        self.exchange.start()

    def _protocol_error(self, event: MessageError) -> None:
        self.engine.stats.incr("errors")
        self.closing = True
        if self.exchange is None or not self.exchange.started:
            log.info("proxy: bad request from {peer}: {detail}", peer=self._peer(), detail=event.detail)
            self.write(responses.error_response(
                event.status, event.detail, self.engine.http_date(self.engine.now()), self.engine.via,
            ))
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    # -- output (used by Exchange) -----------------------------------------------------

    def write(self, data: bytes) -> None:
        self.engine.stats.incr("bytes_out", len(data))
        self.transport.write(data)

    def stream_from(self, exchange) -> None:
        """*exchange* now streams a body: our pause/resume go to it."""

    def exchange_done(self, exchange) -> None:
        if exchange is not self.exchange:
            return
        self.exchange = None
        self._response_done(not self.close_after_response, exchange.request_body_done)

    def _response_done(self, keep_alive: bool, request_complete: bool) -> None:
        """A response went out: close, or go on with the next (pipelined) request."""
        if self.gone:
            return
        if not keep_alive or self.closing or not request_complete:
            self.closing = True
            self.body_deadline.cancel()
            self.transport.loseConnection()
            return
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
        if self.core.head_started:
            self.header_deadline.restart()
        else:
            self.idle.touch()
        self._process(self.core.next_request())

    def abort(self) -> None:
        self.closing = True
        self.transport.abortConnection()

    # -- IPushProducer: the transport tells us when its buffer is full -------------------

    def pauseProducing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_producing()
        self.send_deadline.start()

    def resumeProducing(self) -> None:
        self.send_deadline.cancel()
        if self.exchange is not None:
            self.exchange.resume_producing()

    def stopProducing(self) -> None:
        self.send_deadline.cancel()

    def _send_stalled(self) -> None:
        log.info("proxy: {peer} stopped reading for {seconds}s, closing", peer=self._peer(),
                 seconds=self.limits.send_timeout)
        self.engine.stats.incr("timeouts")
        self.abort()

    # -- deadlines ----------------------------------------------------------------------

    def _idle_expired(self) -> bool:
        """The idle timer ran out: close unless a request is under way (then keep waiting)."""
        if self.exchange is not None or self.tunnel is not None or self.core.state is not State.HEAD \
                or self.core.head_started:
            return False
        self.closing = True
        self.transport.loseConnection()
        return True

    def _timed_out(self, kind: str) -> None:
        self.closing = True
        self.engine.stats.incr("timeouts")
        log.info("proxy: {peer}: request {kind} not received in time, closing", peer=self._peer(), kind=kind)
        if self.exchange is None or not self.exchange.started:
            self.write(responses.error_response(
                408, f"the request {kind} did not arrive in time", self.engine.http_date(self.engine.now()),
                self.engine.via,
            ))
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def _peer(self) -> str:
        return format_peer(self.transport.getPeer())


class _Refused(protocol.Protocol):
    """A client outside the allowed networks: one 403 and the close."""

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        self.transport.write(self.message)
        self.transport.loseConnection()


class ProxyFactory(protocol.Factory):
    noisy = False

    def __init__(self, engine, allow: list[str]) -> None:
        self.engine = engine
        self.allow = [ipaddress.ip_network(network, strict=False) for network in allow]
        self.connections: set[ProxyServerProtocol] = set()

    def allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return True  # UNIX sockets and the like: local by construction
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    def buildProtocol(self, addr):
        host = getattr(addr, "host", "")
        if not self.allowed(host):
            self.engine.stats.incr("refused")
            return _Refused(responses.error_response(
                403, "this proxy does not serve your network", self.engine.http_date(self.engine.now()),
                self.engine.via,
            ))
        return ProxyServerProtocol(self)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.transport.loseConnection()
