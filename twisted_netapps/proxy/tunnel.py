"""CONNECT (RFC 9110 9.3.6): a TCP tunnel, only to allowed ports, only in forward mode.

After ``200 Connection Established`` bytes are relayed both ways untouched.
Each side's transport is the other's producer, so a slow reader pauses the
fast writer instead of filling memory; a tunnel idle for
``tunnel_idle_timeout`` is closed.
"""

from __future__ import annotations

from twisted.internet import protocol
from twisted.logger import Logger

from twisted_netapps.http.errors import ProtocolError
from twisted_netapps.proxy import responses
from twisted_netapps.http.targets import parse_connect_target
from twisted_netapps.proxy.targets import via_pseudonyms
from twisted_netapps.proxy.upstream import CONNECT_ERRORS

log = Logger(namespace="netapps.proxy")


class _Outbound(protocol.Protocol):
    def __init__(self, tunnel: "Tunnel") -> None:
        self.tunnel = tunnel

    def dataReceived(self, data: bytes) -> None:
        self.tunnel.from_server(data)

    def connectionLost(self, reason) -> None:
        self.tunnel.server_lost()


class _OutboundFactory(protocol.Factory):
    noisy = False

    def __init__(self, tunnel: "Tunnel") -> None:
        self.tunnel = tunnel

    def buildProtocol(self, addr):
        return _Outbound(self.tunnel)


class Tunnel:
    def __init__(self, client, host: bytes, port: int) -> None:
        self.client = client
        self.engine = client.engine
        self.host = host
        self.port = port
        self.server = None
        self.pending = b""
        self.closed = False
        self._timer = None
        self._connecting = None

    def start(self) -> None:
        connector = self.engine.pool.connector
        self._connecting = connector.connect(self.host.strip(b"[]").decode("ascii"), self.port, _OutboundFactory(self))
        self._connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, server) -> None:
        self._connecting = None
        if self.closed:
            server.transport.loseConnection()
            return
        self.server = server
        self.engine.stats.incr("tunnels")
        self.client.write(b"HTTP/1.1 200 Connection Established\r\nVia: 1.1 " + self.engine.via + b"\r\n\r\n")
        rest = self.client.core.become_tunnel() + self.pending
        self.pending = b""
        if rest:
            server.transport.write(rest)
        server.transport.registerProducer(self.client.transport, True)
        self.client.transport.registerProducer(server.transport, True)
        self._touch()

    def _failed(self, failure) -> None:
        self._connecting = None
        if self.closed:
            return
        failure.trap(*CONNECT_ERRORS)
        self.refuse(502, f"cannot connect to {self.host.decode('latin-1')}:{self.port}: {failure.getErrorMessage()}")

    def refuse(self, status: int, detail: str) -> None:
        self.closed = True
        self.client.write(responses.error_response(status, detail, self.engine.http_date(self.engine.now()),
                                                   self.engine.via))
        self.client.transport.loseConnection()

    def from_client(self, data: bytes) -> None:
        if self.server is None:
            self.pending += data  # the client did not wait for our 200
            return
        self._touch()
        self.server.transport.write(data)

    def from_server(self, data: bytes) -> None:
        self._touch()
        self.client.write(data)

    def _touch(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.engine.limits.tunnel_idle_timeout)
        else:
            self._timer = self.engine.reactor.callLater(self.engine.limits.tunnel_idle_timeout, self._idle)

    def _idle(self) -> None:
        self._timer = None
        self._close()

    def _close(self) -> None:
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._connecting is not None:
            self._connecting.cancel()
        if self.server is not None:
            self.server.transport.loseConnection()
        self.client.transport.loseConnection()

    def client_lost(self) -> None:
        self._close()

    def server_lost(self) -> None:
        self._close()


def start_tunnel(client, head) -> Tunnel | None:
    engine = client.engine
    try:
        if engine.reverse_origin is not None:
            raise ProtocolError(405, "CONNECT is for forward proxies; this one is a reverse proxy")
        host, port = parse_connect_target(head.target)
        if port not in engine.allowed_ports:
            raise ProtocolError(403, f"CONNECT to port {port} is not allowed")
        if engine.via in via_pseudonyms(head.headers):
            raise ProtocolError(508, "request loop: this request already went through this proxy")
    except ProtocolError as e:
        tunnel = Tunnel(client, b"", 0)
        tunnel.refuse(e.status, e.detail)
        return None
    tunnel = Tunnel(client, host, port)
    tunnel.start()
    return tunnel
