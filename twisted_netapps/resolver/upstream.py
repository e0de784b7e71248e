"""Twisted driver for :class:`~twisted_netapps.resolver.iterate.Resolution`.

Carries out each :class:`SendQuery` the core asks for:

- UDP from a fresh socket per upstream query (bound to port 0: the kernel
  picks a random ephemeral source port, RFC 5452), *connected* to the
  server so the kernel itself drops datagrams from any other address/port;
  an ICMP port-unreachable ends the exchange at once;
- TCP (2-byte length prefix) when the core retries a truncated answer;
- a timeout per exchange with ``reactor.callLater``.

Every event goes back to the core, which checks ID, question and source and
decides what is next. A per-query socket costs a socket/bind/connect/close, measured
here at ~16 us (``listenUDP(0)`` + ``connect`` + ``stopListening``: ~80 us,
with two log lines per query); only cache misses pay it, and it buys a
source port unpredictable to an off-path attacker, which a shared pool of
long-lived sockets would not.

The one reactor-specific part is that fast UDP exchange: a plain socket
watched with ``IReactorFDSet.addReader``. :func:`udp_exchange_for` is the
seam: a reactor without ``IReactorFDSet`` (IOCP, a wrapper, a test reactor)
gets :class:`_PortExchange`, the same exchange over ``listenUDP`` and a
connected ``IUDPTransport`` (slower, and Twisted logs two lines per query).
"""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_netapps.resolver.iterate import Done, Resolution, SendQuery

log = Logger(namespace="netapps.resolver")


def source_interface(server: str) -> str:
    """The local address to send from: loopback servers get a loopback source."""
    if ":" in server:
        return "::1" if server == "::1" else "::"
    return "127.0.0.1" if server.startswith("127.") else ""


@implementer(IReadDescriptor)
class _UDPExchange:
    """One upstream UDP query from its own connected socket.

    A plain socket rather than ``listenUDP``: no per-query log lines from
    Twisted's UDP port, and a socket error (an ICMP port unreachable shows up
    as EPOLLERR, which the reactor reports as ``connectionLost``) becomes
    "unreachable" at once instead of a silent wait for the timeout.
    """

    def __init__(self, runner: "ResolutionRunner", token: int, query: SendQuery, reactor) -> None:
        self.runner = runner
        self.token = token
        self.query = query
        self.reactor = reactor
        family = socket.AF_INET6 if ":" in query.server else socket.AF_INET
        # SOCK_NONBLOCK: non-blocking from the start, one system call fewer than setblocking().
        self.sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        try:
            interface = source_interface(query.server)
            if interface:
                self.sock.bind((interface, 0))  # port 0: a random ephemeral port per query
            self.sock.connect((query.server, query.port))
            self.sock.send(query.wire)
        except OSError:
            self.sock.close()
            raise
        reactor.addReader(self)

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "resolver-upstream"

    def doRead(self) -> None:
        for _ in range(16):  # a few stray datagrams at most, then back to the reactor
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as e:
                self.runner.unreachable(self.token, e.strerror or str(e))
                return
            self.runner.received(self.token, data, (self.query.server, self.query.port))
            if self.sock.fileno() < 0:
                return

    def connectionLost(self, reason) -> None:
        code = 0
        if self.sock.fileno() >= 0:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.close()
        self.runner.unreachable(self.token, os.strerror(code) if code else "socket error")

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.reactor.removeReader(self)
            self.sock.close()


class _PortExchangeProtocol(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, exchange: "_PortExchange") -> None:
        self.exchange = exchange

    def datagramReceived(self, data: bytes, addr) -> None:
        exchange = self.exchange
        # connected: the kernel delivers only the server's datagrams
        exchange.runner.received(exchange.token, data, (exchange.query.server, exchange.query.port))

    def connectionRefused(self) -> None:
        self.exchange.runner.unreachable(self.exchange.token, "connection refused")

    def stopProtocol(self) -> None:
        if not self.exchange.closed:  # the reactor dropped the port (a socket error)
            self.exchange.closed = True
            self.exchange.runner.unreachable(self.exchange.token, "socket error")


class _PortExchange:
    """One upstream UDP query through ``reactor.listenUDP`` on any ``IReactorUDP``.

    The fallback for reactors without ``IReactorFDSet``: a fresh port per
    query (port 0: a random source port), connected to the server, closed
    after the exchange.
    """

    def __init__(self, runner: "ResolutionRunner", token: int, query: SendQuery, reactor) -> None:
        self.runner = runner
        self.token = token
        self.query = query
        self.closed = False
        interface = source_interface(query.server) or ("::" if ":" in query.server else "")
        try:
            self.port = reactor.listenUDP(0, _PortExchangeProtocol(self), interface=interface)
        except error.CannotListenError as e:
            raise OSError(str(e.socketError)) from None
        try:
            self.port.connect(query.server, query.port)
            self.port.write(query.wire)
        except (OSError, error.MessageLengthError) as e:
            self.close()
            raise OSError(str(e)) from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.port.stopListening()


def udp_exchange_for(reactor):
    """The UDP exchange class *reactor* can run: raw sockets if it is an ``IReactorFDSet``."""
    return _UDPExchange if IReactorFDSet.providedBy(reactor) else _PortExchange


class _TCPExchange(Int16StringReceiver):
    MAX_LENGTH = 65535

    def __init__(self, runner: "ResolutionRunner", token: int, query: SendQuery) -> None:
        self.runner = runner
        self.token = token
        self.query = query

    def connectionMade(self) -> None:
        self.sendString(self.query.wire)

    def stringReceived(self, data: bytes) -> None:
        self.runner.received(self.token, data, (self.query.server, self.query.port))

    def connectionLost(self, reason=None) -> None:
        self.runner.unreachable(self.token, "TCP connection closed without an answer")


class _TCPExchangeFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, runner: "ResolutionRunner", token: int, query: SendQuery) -> None:
        self.runner = runner
        self.token = token
        self.query = query

    def buildProtocol(self, addr):
        return _TCPExchange(self.runner, self.token, self.query)

    def clientConnectionFailed(self, connector, reason) -> None:
        self.runner.unreachable(self.token, f"TCP connect failed: {reason.getErrorMessage()}")


class ResolutionRunner:
    """Runs one resolution to completion; ``run()`` gives a Deferred[Result]."""

    def __init__(self, resolution: Resolution, reactor, stats=None) -> None:
        self.resolution = resolution
        self.reactor = reactor
        self.stats = stats
        self.deferred: defer.Deferred = defer.Deferred()
        self._token = 0
        self._timer = None
        self._udp_exchange = None
        self._udp_exchange_class = udp_exchange_for(reactor)
        self._connector = None

    def run(self) -> defer.Deferred:
        self._step(self.resolution.start)
        return self.deferred

    # -- events from the network (stale ones, for an earlier token, are ignored)
    def received(self, token: int, data: bytes, source) -> None:
        if token == self._token and not self.deferred.called:
            self._step(self.resolution.receive, data, source, ignorable=True)

    def unreachable(self, token: int, reason: str) -> None:
        if token == self._token and not self.deferred.called:
            self._step(self.resolution.unreachable, reason)

    def _timed_out(self, token: int) -> None:
        self._timer = None
        if token == self._token and not self.deferred.called:
            self._step(self.resolution.timed_out)

    # -- driving the core
    def _step(self, event, *args, ignorable: bool = False) -> None:
        try:
            action = event(*args)
        except Exception:  # boundary: a core bug becomes SERVFAIL (logged by the handler), not a hang
            self._close()
            self.deferred.errback(Failure())
            return
        if action is None and ignorable:
            if self.stats is not None:
                self.stats.incr("upstream_ignored")
            return  # not the reply we wait for: keep waiting
        self._close()
        if isinstance(action, Done):
            self.deferred.callback(action.result)
            return
        self._send(action)

    def _send(self, query: SendQuery) -> None:
        self._token += 1
        token = self._token
        if self.stats is not None:
            self.stats.incr("upstream_tcp" if query.over_tcp else "upstream_udp")
        self._timer = self.reactor.callLater(query.timeout, self._timed_out, token)
        if query.over_tcp:
            factory = _TCPExchangeFactory(self, token, query)
            self._connector = self.reactor.connectTCP(
                query.server, query.port, factory, timeout=max(1, int(query.timeout) + 1)
            )
            return
        try:
            self._udp_exchange = self._udp_exchange_class(self, token, query, self.reactor)
        except OSError as e:  # no socket, no route...: this server is unreachable
            reason = e.strerror or str(e)
            self.reactor.callLater(0, self.unreachable, token, f"cannot send: {reason}")

    def _close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        exchange, self._udp_exchange = self._udp_exchange, None
        if exchange is not None:
            exchange.close()
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.disconnect()
