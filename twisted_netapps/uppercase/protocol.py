"""Twisted adapters for the uppercase core: a TCP protocol and a UDP protocol."""

from __future__ import annotations

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from twisted_netapps.deadlines import Deadline
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.stats import ServiceStats
from twisted_netapps.uppercase.core import DatagramError, LineMachine, LineTooLong, datagram_reply, uppercase

log = Logger(namespace="netapps.uppercase")


def _peer(address) -> str:
    if isinstance(address, tuple):  # UDP gives (host, port)
        return f"{address[0]}:{address[1]}"
    return f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"


@implementer(interfaces.IHalfCloseableProtocol)
class UppercaseLineProtocol(protocol.Protocol, TimeoutMixin):
    """One TCP connection: lines in, uppercased lines out."""

    def __init__(self, factory: "UppercaseFactory") -> None:
        self.factory = factory
        self.machine = LineMachine(factory.max_line)
        self.callLater = factory.reactor.callLater  # TimeoutMixin's clock
        self.lines = 0

    def connectionMade(self) -> None:
        self.peer = _peer(self.transport.getPeer())
        self.setTimeout(self.factory.idle_timeout)
        # A line must be complete this long after its first byte: the idle
        # timer alone lets a client trickle one byte at a time for ever.
        self.line_deadline = Deadline(self.factory.reactor, self.factory.line_timeout, self._line_expired)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        stats = self.factory.stats
        stats.incr("bytes_in", len(data))
        out = []
        for event in self.machine.receive_data(data):
            out.append(event.data)
            if isinstance(event, LineTooLong):
                stats.incr("errors")
                log.info("uppercase: {peer}: line over {limit} bytes, closing", peer=self.peer, limit=event.limit)
                break
            stats.incr("requests")
            self.lines += 1
            self.factory.recent.record("line", peer=self.peer, transport="tcp", size=len(event.data))
            if self.factory.log_requests:
                log.info("uppercase: {peer}: line of {size} bytes", peer=self.peer, size=len(event.data))
        if out:
            reply = b"".join(out)
            stats.incr("bytes_out", len(reply))
            self.transport.write(reply)  # one write per read: coalesced, no Nagle stalls
        if self.machine.failed:
            self.line_deadline.cancel()
            self.transport.loseConnection()
        elif self.machine.pending:
            self.line_deadline.start()
        else:
            self.line_deadline.cancel()

    def _line_expired(self) -> None:
        self.factory.stats.incr("errors")
        log.info("uppercase: {peer}: line not complete after {t}s, closing", peer=self.peer,
                 t=self.factory.line_timeout)
        self.transport.write(b"ERROR: line timeout\r\n")
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        # The client half-closed (e.g. `printf hi | nc -N`): answer the
        # unterminated tail too, then close our side.
        tail = self.machine.pending
        if tail and not self.machine.failed:
            self.factory.stats.incr("requests")
            self.lines += 1
            reply = uppercase(tail)
            self.factory.stats.incr("bytes_out", len(reply))
            self.transport.write(reply)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        log.info("uppercase: {peer}: idle for {timeout}s, closing", peer=self.peer, timeout=self.factory.idle_timeout)
        self.transport.write(b"ERROR: idle timeout\r\n")
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        self.line_deadline.cancel()


class UppercaseFactory(protocol.Factory):
    noisy = False  # the frame logs connections (twisted_netapps.connections)

    def __init__(self, stats: ServiceStats, reactor, *, max_line: int, idle_timeout: float, log_requests: bool,
                 line_timeout: float = 60.0, recent=NULL_RECENT):
        self.recent = recent
        self.stats = stats
        self.reactor = reactor
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.line_timeout = line_timeout
        self.log_requests = log_requests

    def buildProtocol(self, addr):
        return UppercaseLineProtocol(self)


class UppercaseDatagramProtocol(protocol.DatagramProtocol):
    """Each datagram comes back uppercased to its sender (see core for limits)."""

    noisy = False

    def __init__(self, stats: ServiceStats, *, max_datagram: int, log_requests: bool, recent=NULL_RECENT) -> None:
        self.recent = recent
        self.stats = stats
        self.max_datagram = max_datagram
        self.log_requests = log_requests

    def datagramReceived(self, data: bytes, addr) -> None:
        self.stats.incr("bytes_in", len(data))
        reply = datagram_reply(data, self.max_datagram)
        if reply is None:
            self.stats.incr("dropped")
            return
        self.stats.incr("errors" if isinstance(reply, DatagramError) else "requests")
        self.recent.record("datagram", peer=_peer(addr), size=len(data))
        if self.log_requests:
            log.info("uppercase: udp datagram of {size} bytes from {peer}", size=len(data), peer=_peer(addr))
        try:
            self.transport.write(reply.data, addr)
        except OSError as e:  # e.g. ENOBUFS or an unreachable sender: drop, never crash
            self.stats.incr("errors")
            log.info("uppercase: cannot reply to {peer}: {error}", peer=_peer(addr), error=e)
            return
        self.stats.incr("bytes_out", len(reply.data))
