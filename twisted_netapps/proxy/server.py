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

from twisted_netapps.http.events import Data, EndOfMessage, MessageError, RequestReceived
from twisted_netapps.http.server import ServerConnection, State
from twisted_netapps.proxy import responses
from twisted_netapps.proxy.exchange import Exchange
from twisted_netapps.proxy.tunnel import start_tunnel

log = Logger(namespace="netapps.proxy")


@implementer(interfaces.IPushProducer)
class ProxyServerProtocol(protocol.Protocol):
    def __init__(self, factory: "ProxyFactory") -> None:
        self.factory = factory
        self.engine = factory.engine
        self.limits = factory.engine.limits
        self.core = ServerConnection(
            max_request_line=self.limits.max_request_line, max_head=self.limits.max_head,
            max_fields=self.limits.max_fields,
        )
        self.exchange: Exchange | None = None
        self.closing = False
        self.close_after_response = False
        self.tunnel = None
        self._events: deque = deque()
        self._processing = False
        self._timer = None
        self._timer_kind = None
        self._send_timer = None
        self._reading_paused = False
        self.gone = False

    # -- connection lifetime ----------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self.engine.stats.connection_opened()
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self._set_timer("idle")

    def connectionLost(self, reason) -> None:
        self.gone = True
        self.factory.connections.discard(self)
        self.engine.stats.connection_closed()
        self._cancel_timer()
        self._cancel_send_timer()
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
        if self.core.state is State.HEAD and self.exchange is None:
            self._set_timer("header" if self.core.head_started else "idle")
        elif self.core.state is State.BODY:
            self._set_timer("body", restart=True)
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
                    if self.exchange is not None:
                        self.exchange.request_end()
                    if self._timer_kind == "body":
                        self._cancel_timer()
                elif kind is MessageError:
                    self._protocol_error(event)
        finally:
            self._processing = False

    def _request(self, event: RequestReceived) -> None:
        self._cancel_timer()
        self.engine.stats.incr("requests")
        head = event.head
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
            self._set_timer("body")
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
        if self.gone:
            return
        if self.close_after_response or self.closing or not exchange.request_body_done:
            self.closing = True
            self._cancel_timer()
            self.transport.loseConnection()
            return
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
        self._set_timer("header" if self.core.head_started else "idle")
        self._process(self.core.next_request())

    def abort(self) -> None:
        self.closing = True
        self.transport.abortConnection()

    # -- IPushProducer: the transport tells us when its buffer is full -------------------

    def pauseProducing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_producing()
        if self._send_timer is None:
            self._send_timer = self.engine.reactor.callLater(self.limits.send_timeout, self._send_stalled)

    def resumeProducing(self) -> None:
        self._cancel_send_timer()
        if self.exchange is not None:
            self.exchange.resume_producing()

    def stopProducing(self) -> None:
        self._cancel_send_timer()

    def _send_stalled(self) -> None:
        self._send_timer = None
        log.info("proxy: {peer} stopped reading for {seconds}s, closing", peer=self._peer(),
                 seconds=self.limits.send_timeout)
        self.abort()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None and self._send_timer.active():
            self._send_timer.cancel()
        self._send_timer = None

    # -- deadlines ----------------------------------------------------------------------

    def _set_timer(self, kind: str, restart: bool = False) -> None:
        if self._timer_kind == kind and self._timer is not None and self._timer.active() and not restart:
            return  # a header deadline runs from the first byte: new bytes do not extend it
        self._cancel_timer()
        seconds = {"idle": self.limits.idle_timeout, "header": self.limits.header_timeout,
                   "body": self.limits.body_timeout}[kind]
        self._timer_kind = kind
        self._timer = self.engine.reactor.callLater(seconds, self._timed_out, kind)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_kind = None

    def _timed_out(self, kind: str) -> None:
        self._timer = None
        self._timer_kind = None
        self.closing = True
        if kind == "idle":
            self.transport.loseConnection()
            return
        self.engine.stats.incr("timeouts")
        log.info("proxy: {peer}: {kind} timeout, closing", peer=self._peer(), kind=kind)
        if self.exchange is None or not self.exchange.started:
            self.write(responses.error_response(
                408, f"the request {kind} did not arrive in time", self.engine.http_date(self.engine.now()),
                self.engine.via,
            ))
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"


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
