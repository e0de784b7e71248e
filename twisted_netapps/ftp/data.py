"""FTP data connections: passive listeners, active connections, the data-connection protocol.

- A passive listener (PASV/EPSV) binds on the control connection's local
  address, never on every interface, on a port picked at random from the
  configured range (a few random tries, never a scan in order) or, without a
  range, chosen by the kernel. It accepts one connection, and only from the
  control connection's peer address; others are dropped at once and the
  listener keeps waiting.
- An active connection (PORT/EPRT) goes to the address the core already
  checked to be the control peer's.
- :class:`DataConnection` starts TLS when the session asked for PROT P (the
  FTP server is the TLS server in both directions, RFC 4217 section 7) and
  reads nothing until a transfer takes it, so an early upload waits in the
  kernel, not in memory.
"""

from __future__ import annotations

import errno
import random
import socket

from twisted.internet import defer, error, interfaces, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from twisted_netapps.addresses import same_host

log = Logger(namespace="netapps.ftp")

MAX_PORT_TRIES = 16


class PortPicker:
    """Candidate passive ports: random ones from [low, high], or 0 (the kernel's choice)."""

    def __init__(self, low: int, high: int, rng: random.Random | None = None) -> None:
        self.low, self.high = low, high
        self.rng = rng or random.SystemRandom()

    def candidates(self) -> list[int]:
        if not self.low:
            return [0]
        span = self.high - self.low + 1
        return self.rng.sample(range(self.low, self.high + 1), min(span, MAX_PORT_TRIES))


@implementer(interfaces.IHandshakeListener)
class DataConnection(protocol.Protocol, TimeoutMixin):
    """One data connection. A transfer attaches with :meth:`attach` and gets
    ``data_received(bytes)``, ``data_connection_lost(reason)`` and ``data_idle()``.

    Under TLS the connection is offered to a transfer only once the
    handshake has completed: clients start it after reading the 150, and
    bytes written (or a close) before then would break it.
    """

    def __init__(self, channel: "DataChannel") -> None:
        self.channel = channel
        self.transfer = None
        self.lost = False
        self.tls = False

    def connectionMade(self) -> None:
        channel = self.channel
        self.callLater = channel.reactor.callLater
        self.setTimeout(channel.timeout)
        tls_options = channel.tls_options()
        if tls_options is not None:
            self.tls = True
            self.transport.startTLS(tls_options)  # reading goes on: the handshake needs it
            return
        self.transport.pauseProducing()  # until a transfer attaches
        channel.connected(self)

    def handshakeCompleted(self) -> None:
        if not self.lost:
            self.transport.pauseProducing()
            self.channel.connected(self)

    def attach(self, transfer) -> None:
        self.transfer = transfer
        if not self.lost:
            self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self.transfer is not None:
            self.transfer.data_received(data)

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        self.lost = True
        if self.transfer is not None:
            self.transfer.data_connection_lost(reason)
        else:
            self.channel.lost_before_transfer(self)

    def timeoutConnection(self) -> None:
        if self.transfer is not None:
            self.transfer.data_idle()
        else:
            self.transport.abortConnection()


@implementer(interfaces.IReadDescriptor)
class _PassiveListener:
    """A listening socket for one PASV/EPSV: accepts one connection from the peer's address.

    Our own socket rather than ``listenTCP``: a Twisted Port logs two lines
    per listener (a busy server opens one per transfer), and here the
    accepted socket is checked before any protocol exists; the connection is
    handed to Twisted with ``adoptStreamConnection``.
    """

    def __init__(self, reactor, sock: socket.socket, channel: "DataChannel") -> None:
        self.reactor = reactor
        self.sock = sock
        self.channel = channel
        self.factory = _DataFactory(channel)

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "ftp-passive"

    def doRead(self):
        while self.sock.fileno() >= 0:
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as e:  # EMFILE and friends: try again on the next event
                log.warn("ftp: passive accept failed: {error}", error=e)
                return None
            with conn:
                if not same_host(addr[0], self.channel.peer_host):
                    # Someone raced the client to the announced port (data theft).
                    log.info("ftp: passive data connection from {host} refused (control peer is {peer})",
                             host=addr[0], peer=self.channel.peer_host)
                    continue
                self.stop()
                conn.setblocking(False)
                self.reactor.adoptStreamConnection(conn.fileno(), conn.family, self.factory)
            return None
        return None

    def connectionLost(self, reason) -> None:
        self.stop()

    def stop(self) -> None:
        if self.sock.fileno() >= 0:
            self.reactor.removeReader(self)
            self.sock.close()


def _can_adopt(reactor) -> bool:
    """Whether *reactor* can watch our own listening socket and adopt what it accepts
    (every posix reactor can; IOCP and test reactors cannot)."""
    return interfaces.IReactorFDSet.providedBy(reactor) and interfaces.IReactorSocket.providedBy(reactor)


class _TwistedPassivePort:
    """The passive listener for reactors without :func:`_can_adopt`: a ``listenTCP``
    port whose factory turns away any address but the control peer's.

    Twisted accepts before the factory is asked, so a stranger's connection is
    accepted and closed at once rather than never accepted; otherwise the same
    rules as :class:`_PassiveListener`.
    """

    def __init__(self, reactor, port: int, channel: "DataChannel") -> None:
        self.channel = channel
        self.factory = _DataFactory(channel)
        self.port = reactor.listenTCP(port, _PeerOnlyFactory(self), backlog=4, interface=channel.local_host)
        self.number = self.port.getHost().port

    def accept(self, addr):
        if not same_host(addr.host, self.channel.peer_host):
            log.info("ftp: passive data connection from {host} refused (control peer is {peer})",
                     host=addr.host, peer=self.channel.peer_host)
            return None
        self.stop()
        return self.factory.buildProtocol(addr)

    def stop(self) -> None:
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()


class _PeerOnlyFactory(protocol.Factory):
    noisy = False

    def __init__(self, listener: _TwistedPassivePort) -> None:
        self.listener = listener

    def buildProtocol(self, addr):
        return self.listener.accept(addr)


class _DataFactory(protocol.Factory):
    noisy = False

    def __init__(self, channel: "DataChannel") -> None:
        self.channel = channel

    def buildProtocol(self, addr):
        return DataConnection(self.channel)


class _ActiveFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, channel: "DataChannel") -> None:
        self.channel = channel

    def buildProtocol(self, addr):
        return DataConnection(self.channel)

    def clientConnectionFailed(self, connector, reason) -> None:
        self.channel.connect_failed(reason)


class DataChannel:
    """The data-connection side of one control connection: at most one listener or
    active address, and at most one connection, at a time."""

    def __init__(self, reactor, *, local_host: str, peer_host: str, picker: PortPicker,
                 timeout: float, tls_options) -> None:
        self.reactor = reactor
        self.local_host = local_host
        self.peer_host = peer_host
        self.picker = picker
        self.timeout = timeout
        # () -> TLS options or None: asked when a connection is made (PROT P at that moment).
        self.tls_options = tls_options
        self.port = None  # the passive listening port
        self.active: tuple[str, int] | None = None
        self.connection: DataConnection | None = None
        self.pending: DataConnection | None = None  # connected, no transfer yet
        self._waiter: defer.Deferred | None = None
        self._wait_timer = None

    # ------------------------------------------------------------ set-up

    def listen(self) -> int:
        """Open a passive listener; its port. Raises CannotListenError when no port is free."""
        self.close()
        family = socket.AF_INET6 if ":" in self.local_host else socket.AF_INET
        last = None
        for port in self.picker.candidates():
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.bind((self.local_host, port))
                sock.listen(4)
            except OSError as e:
                sock.close()
                last = e
                if e.errno != errno.EADDRINUSE:
                    break
                continue
            sock.setblocking(False)
            if not _can_adopt(self.reactor):
                port = sock.getsockname()[1]
                sock.close()  # only a free port was wanted: Twisted listens on it itself
                self.port = _TwistedPassivePort(self.reactor, port, self)
                return self.port.number
            self.port = _PassiveListener(self.reactor, sock, self)
            self.reactor.addReader(self.port)
            return sock.getsockname()[1]
        raise error.CannotListenError(self.local_host, port, last)

    def use_active(self, host: str, port: int) -> None:
        self.close()
        self.active = (host, port)

    @property
    def is_connected(self) -> bool:
        return self.pending is not None

    def wait(self) -> defer.Deferred:
        """Fires with the DataConnection for the transfer (connecting in active mode),
        or fails with ConnectError after the timeout."""
        d = defer.Deferred(lambda _: self._cancel_wait())
        if self.pending is not None:
            connection, self.pending = self.pending, None
            self.connection = connection
            self._stop_listening()
            d.callback(connection)
            return d
        self._waiter = d
        self._wait_timer = self.reactor.callLater(self.timeout, self._wait_timed_out)
        if self.active is not None:
            host, port = self.active
            self.reactor.connectTCP(host, port, _ActiveFactory(self), timeout=self.timeout,
                                    bindAddress=(self.local_host, 0))
        elif self.port is None:
            self._fail_wait(error.ConnectError(string="no data connection was prepared"))
        return d

    # ------------------------------------------------------------ events from connections

    def connected(self, connection: DataConnection) -> None:
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            self._cancel_timer()
            self.connection = connection
            self._stop_listening()
            waiter.callback(connection)
        else:
            self.pending = connection
            self._stop_listening()

    def connect_failed(self, reason) -> None:
        self._fail_wait(reason.value)

    def lost_before_transfer(self, connection: DataConnection) -> None:
        if connection is self.pending:
            self.pending = None
        elif connection.tls and self._waiter is not None:  # the TLS handshake failed
            self._fail_wait(error.ConnectionLost("TLS handshake on the data connection failed"))

    # ------------------------------------------------------------ tear-down

    def _wait_timed_out(self) -> None:
        self._wait_timer = None
        self._fail_wait(error.TimeoutError(string="no data connection"))

    def _fail_wait(self, reason: BaseException) -> None:
        self._cancel_timer()
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.errback(reason)

    def _cancel_wait(self) -> None:
        self._cancel_timer()
        self._waiter = None

    def _cancel_timer(self) -> None:
        if self._wait_timer is not None and self._wait_timer.active():
            self._wait_timer.cancel()
        self._wait_timer = None

    def _stop_listening(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            port.stop()

    def transfer_finished(self) -> None:
        """The transfer is over: the next one needs a new set-up (a listener whose
        connection never came is closed too, not left open until the session ends)."""
        self.close()

    def close(self) -> None:
        """Drop the listener, any idle or current data connection, and the active address."""
        self._stop_listening()
        self.active = None
        self._fail_wait(error.ConnectionAborted())
        for connection in (self.pending, self.connection):
            if connection is not None and not connection.lost:
                connection.transport.abortConnection()
        self.pending = self.connection = None
