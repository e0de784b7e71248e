"""What every TCP listener gets from the frame: limits, connection lines, counts.

:meth:`twisted_netapps.context.ServiceContext.listeners` wraps each stream
listener's factory in a :class:`LimitedFactory`, one per listener, so that

- each listener has its own ``max_connections`` and its own per-client-address
  cap (``max_connections_per_address``): a flood on port 25 does not starve
  submission, and one address cannot take a listener's every slot;
- a connection over a limit gets the protocol's own refusal (``421`` /
  ``-ERR`` / ``* BYE`` / nothing), sent by the frame, and is closed;
- a full listener makes room for an address that holds fewer connections
  than the address holding the most (fair share): the oldest connection of
  the heaviest address is closed and the newcomer admitted. Slow clients
  spread over many addresses (a distributed slowloris) could otherwise keep
  every slot filled, refilling each one the moment a deadline frees it, and
  a client with one connection would never get in;
- every connection is logged once when it opens and once when it closes, at
  info, by the frame (services do not log them), rate-limited so that a flood
  writes a few lines and a count of those suppressed, not one line per
  connection;
- the standard ``connections`` / ``active_connections`` counters are kept
  (``refused_connections`` too).

The wrapper is Twisted's :class:`~twisted.protocols.policies.ProtocolWrapper`
pattern; it keeps half-close (``IHalfCloseableProtocol``) and TLS handshake
notifications (``IHandshakeListener``) working for the protocols that use them.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

from twisted.internet import interfaces
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import policies
from zope.interface import classImplements, providedBy

from twisted_netapps.addresses import format_peer, host_of
from twisted_netapps.settings import setting

log = Logger(namespace="netapps.connections")


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    """Settings every service with TCP listeners has (its ``Settings`` subclasses this)."""

    max_connections: int = setting(
        512, "concurrent connections per TCP listener; more get the protocol's refusal", minimum=1
    )
    max_connections_per_address: int = setting(
        20, "concurrent connections from one client address per TCP listener", minimum=1
    )
    listen_backlog: int = setting(
        511, "TCP listen backlog (pending connections the kernel queues); tcp: endpoints "
        "without their own backlog= get this", minimum=1, maximum=65535,
    )


class LogBudget:
    """A token bucket for log lines: *rate* per second, bursts of *burst*.

    :meth:`allow` says whether to write the next line; lines refused are
    counted and the count is reported with the next line that is written.
    """

    def __init__(self, rate: float = 20.0, burst: int = 100, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class DescriptorBudget:
    """The file descriptors all listeners together may spend on connections.

    Accepting must never take the process's last descriptors: upstream
    sockets (the resolver's queries, the relay's connections), mailbox files
    and the log need some too. The daemon sets :attr:`limit` to the open-file
    limit minus a reserve; every listener's connections count against it, and
    past it new connections get their protocol's refusal instead of an
    ``EMFILE`` that would reset every service's new connections.
    """

    def __init__(self, limit: int | None = None, refusal_allowance: int = 64) -> None:
        self.limit = limit  # None: no budget (tests of one factory)
        self.in_use = 0
        # A refusal holds its descriptor until its message is written: at most
        # this many at once; past that, a connection over a limit is closed at
        # once without a message (a flood must not take the reserve).
        self.refusal_allowance = refusal_allowance
        self.refusing = 0
        self.caps = 0  # the listeners' max_connections added up (for the start-up warning)

    def exhausted(self) -> bool:
        return self.limit is not None and self.in_use >= self.limit

    def may_refuse_politely(self) -> bool:
        return self.refusing < self.refusal_allowance


class _Connection(policies.ProtocolWrapper):
    """One accepted connection: counts it and logs its opening and closing."""

    def __init__(self, factory: "LimitedFactory", wrapped, host: str) -> None:
        super().__init__(factory, wrapped)
        self.host = host
        self.peer = "?"
        self.opened = 0.0
        self.evicted = False
        self._forwarded = tuple(
            i for i in (interfaces.IHalfCloseableProtocol, interfaces.IHandshakeListener) if i.providedBy(wrapped)
        )

    def makeConnection(self, transport) -> None:
        self.peer = format_peer(transport.getPeer())
        self.opened = time.monotonic()
        self.factory.opened(self)
        # The wrapper must provide what the transport does (ITLSTransport...)
        # and what the wrapped protocol does (IHalfCloseableProtocol...).
        # ProtocolWrapper declares that per instance (directlyProvides), which
        # costs 25-65 us a connection; a class per combination, made once, costs nothing.
        self.__class__ = _connection_class(providedBy(transport), self._forwarded)
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)

    def connectionLost(self, reason) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.factory.closed(self)

    # IHalfCloseableProtocol, forwarded (provided per connection when the wrapped protocol has it)
    def readConnectionLost(self) -> None:
        self.wrappedProtocol.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self.wrappedProtocol.writeConnectionLost()

    # IHandshakeListener, forwarded likewise
    def handshakeCompleted(self) -> None:
        self.wrappedProtocol.handshakeCompleted()


_CONNECTION_CLASSES: dict = {}


def _connection_class(transport_spec, forwarded: tuple) -> type:
    """A subclass of :class:`_Connection` declaring *transport_spec* and *forwarded*, made once per pair."""
    key = (transport_spec, forwarded)
    cls = _CONNECTION_CLASSES.get(key)
    if cls is None:
        cls = type("_Connection", (_Connection,), {"__module__": __name__})
        classImplements(cls, transport_spec, *forwarded)
        if len(_CONNECTION_CLASSES) < 256:  # transports with per-instance declarations: do not grow without bound
            _CONNECTION_CLASSES[key] = cls
    return cls


class _Refused(policies.ProtocolWrapper):
    """Over a limit: write the protocol's refusal (if any) and close."""

    def __init__(self, factory: "LimitedFactory", message: bytes | None) -> None:
        from twisted.internet.protocol import Protocol

        super().__init__(factory, Protocol())
        self.message = message

    def makeConnection(self, transport) -> None:
        self.factory.registerProtocol(self)
        self.transport = transport
        self.connected = 1
        if self.message:
            transport.write(self.message)
        transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.factory.unregisterProtocol(self)
        self.factory.descriptors.refusing -= 1


class LimitedFactory(policies.WrappingFactory):
    """Wraps one listener's protocol factory with the limits and the bookkeeping above."""

    noisy = False
    protocol = _Connection

    def __init__(
        self,
        wrapped,
        *,
        service: str,
        listener: str,
        limits: StreamSettings,
        stats,
        refuse: bytes | None = None,
        log_budget: LogBudget | None = None,
        descriptors: DescriptorBudget | None = None,
    ) -> None:
        super().__init__(wrapped)
        wrapped.noisy = False  # the frame announces listeners with their address, once
        self.service = service
        self.listener = listener
        self.max_connections = limits.max_connections
        self.max_per_address = limits.max_connections_per_address
        self.stats = stats
        self.refuse = refuse
        self.budget = log_budget or LogBudget()
        self.descriptors = descriptors or DescriptorBudget()
        self.descriptors.caps += self.max_connections
        # Live connections (evicted ones no longer count here; they hold a descriptor until closed).
        self.active = 0
        self.per_address: Counter[str] = Counter()
        self.by_address: dict[str, dict[_Connection, None]] = {}  # oldest first

    def buildProtocol(self, addr):
        host = host_of(addr)
        if self.per_address[host] >= self.max_per_address:
            return self._refused(addr, f"{self.max_per_address} connections open from {host}")
        if self.descriptors.exhausted():
            return self._refused(addr, f"{self.descriptors.in_use} connections open in all, the most "
                                       "the open-file limit allows with its reserve")
        if self.active >= self.max_connections and not self._evict_for(host):  # evict last: never in vain
            return self._refused(addr, f"{self.max_connections} connections open on {self.listener}")
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped, host)

    def _evict_for(self, host: str) -> bool:
        """Close the oldest connection of the address holding the most, if *host* holds fewer
        even with one more; whether a slot was freed."""
        heaviest, count = self.per_address.most_common(1)[0]
        if self.per_address.get(host, 0) + 1 >= count:
            return False
        victim = next(iter(self.by_address[heaviest]))
        victim.evicted = True
        self.active -= 1
        self._forget(victim)
        self.stats.incr("evicted_connections")
        if self.budget.allow():
            suppressed = self.budget.take_suppressed()
            log.warn(
                "{service}: {listener} full: closing the oldest of {count} connections from {heaviest} "
                "to admit {host}{more}",
                service=self.service, listener=self.listener, count=count, heaviest=heaviest, host=host,
                more=f" ({suppressed} log lines suppressed)" if suppressed else "",
            )
        victim.transport.abortConnection()  # now: a slow reader must not keep it while a buffer drains
        return True

    def _forget(self, connection: _Connection) -> None:
        host = connection.host
        self.per_address[host] -= 1
        del self.by_address[host][connection]
        if not self.per_address[host]:
            del self.per_address[host]
            del self.by_address[host]

    def _refused(self, addr, why: str):
        self.stats.incr("refused_connections")
        polite = self.descriptors.may_refuse_politely()
        if self.budget.allow():
            suppressed = self.budget.take_suppressed()
            log.warn(
                "{service}: refusing {peer}: {why}{more}",
                service=self.service, peer=format_peer(addr), why=why,
                more=f" ({suppressed} log lines suppressed)" if suppressed else "",
            )
        if not polite:
            return None  # Twisted closes the accepted socket at once: no descriptor is held
        self.descriptors.refusing += 1
        return _Refused(self, self.refuse)

    def opened(self, connection: _Connection) -> None:
        self.active += 1
        self.descriptors.in_use += 1
        self.per_address[connection.host] += 1
        self.by_address.setdefault(connection.host, {})[connection] = None
        self.stats.connection_opened()
        if self.budget.allow():
            suppressed = self.budget.take_suppressed()
            log.info(
                "{service}: connection from {peer} to {listener}{more}",
                service=self.service, peer=connection.peer, listener=self.listener,
                more=f" ({suppressed} log lines suppressed)" if suppressed else "",
            )

    def closed(self, connection: _Connection) -> None:
        self.descriptors.in_use -= 1
        if not connection.evicted:  # an evicted one left the live counts when it was chosen
            self.active -= 1
            self._forget(connection)
        self.stats.connection_closed()
        if self.budget.allow():
            log.info(
                "{service}: connection from {peer} closed after {seconds:.1f}s",
                service=self.service, peer=connection.peer,
                seconds=time.monotonic() - connection.opened,
            )
