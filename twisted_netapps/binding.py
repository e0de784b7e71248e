"""Bind every configured listener before any other start-up work.

twistd calls ``makeService`` before it starts anything (and before it drops
privileges). Binding there, first, makes a taken or privileged port the one
line start-up fails with, leaving nothing behind: no data directory, no TLS
certificate, no demo account.

Each listener named in the configuration (:meth:`Config.listeners`) is bound
with a stand-in: a :class:`LateFactory` for stream endpoints, a
:class:`LateDatagramProtocol` for ``udp:`` ones. When the service's
``build`` calls ``context.listeners(...)`` for the same endpoint, the bound
listener is handed over and the real factory or protocol attached; no
connection is accepted before the reactor runs, so nothing ever meets the
stand-in. Listeners no service asks for are closed again with a warning.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import protocol
from twisted.logger import Logger

from twisted_netapps.config import Config
from twisted_netapps.errors import ConfigError
from twisted_netapps.listeners import (
    BoundAddress,
    DatagramListener,
    StreamListener,
    is_datagram,
    parse_datagram,
    parse_stream,
)

log = Logger(namespace="netapps")

STREAM_PORT_SCHEMES = ("tcp", "tcp6", "ssl")


class LateFactory(protocol.Factory):
    """A listening port's factory until the service's own is attached."""

    noisy = False

    def __init__(self, service: str) -> None:
        self.service = service
        self.target = None
        self.started = False

    def logPrefix(self) -> str:
        return self.service

    def attach(self, factory) -> None:
        self.target = factory
        if self.started:
            factory.doStart()

    def doStart(self) -> None:
        self.started = True

    def doStop(self) -> None:
        self.started = False
        if self.target is not None:
            self.target.doStop()

    def buildProtocol(self, addr):
        return None if self.target is None else self.target.buildProtocol(addr)


class LateDatagramProtocol(protocol.DatagramProtocol):
    """A UDP port's protocol until the service's own is attached."""

    noisy = False

    def __init__(self, service: str) -> None:
        self.service = service
        self.target = None

    def logPrefix(self) -> str:
        return self.service

    def attach(self, real: protocol.DatagramProtocol) -> None:
        self.target = real
        real.makeConnection(self.transport)
        # The port calls these on its protocol: straight to the real one,
        # no extra call per datagram.
        self.datagramReceived = real.datagramReceived
        self.connectionRefused = real.connectionRefused

    def datagramReceived(self, data, addr) -> None:
        """Nothing is attached yet (the reactor is not running): nothing to answer with."""

    def doStop(self) -> None:
        if self.target is not None:
            self.target.doStop()


def check_stream_port(description: str, where: str) -> None:
    """A readable error for ``tcp:``/``tcp6:``/``ssl:`` endpoints whose port is not a number
    (Twisted's own message is Python's ``invalid literal for int()``)."""
    scheme, _, rest = description.partition(":")
    if scheme.strip().lower() not in STREAM_PORT_SCHEMES:
        return
    args = [a for a in rest.split(":") if a]
    named = [a.split("=", 1)[1] for a in args if a.startswith("port=")]
    positional = [a for a in args if "=" not in a]
    port = named[0] if named else positional[0] if positional else None
    if port is None:
        raise ConfigError(f"{where}: bad endpoint {description!r}: no port (e.g. {scheme}:2525:interface=127.0.0.1)")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: bad endpoint {description!r}: the port must be a number from 0 to 65535")


class PreboundListeners:
    """Every listener of the enabled services, bound, waiting for its service."""

    def __init__(self, config: Config, reactor) -> None:
        self.config = config
        self.reactor = reactor
        self._waiting: dict[tuple[str, str, str], list] = {}

    def bind_all(self, on_bound: Callable[[str, BoundAddress], None]) -> None:
        """Bind every configured endpoint; raise ConfigError/ListenError (one line) on the first failure.

        *on_bound* gets the listener's name (``smtp.submission``) and where it listens.
        """
        config = self.config
        for service in config.enabled:
            for name, (path, endpoints) in config.listeners(service).items():
                for i, description in enumerate(endpoints):
                    where = f"{config.source}: {service}.{path}[{i}]"
                    listener = self._make(service, name, description, where, on_bound)
                    listener.privilegedStartService()  # binds now
                    self._waiting.setdefault((service, path, description), []).append(listener)

    def _make(self, service: str, name: str, description: str, where: str, on_bound):
        def bound(address: BoundAddress) -> None:
            on_bound(name, address)

        if is_datagram(description):
            spec = parse_datagram(description, where)
            return DatagramListener(
                service, description, spec, LateDatagramProtocol(service), self.reactor, bound
            )
        check_stream_port(description, where)
        endpoint = parse_stream(self.reactor, description, where, backlog=self._backlog(service))
        return StreamListener(service, description, endpoint, LateFactory(service), bound)

    def _backlog(self, service: str) -> int | None:
        return getattr(self.config.services[service], "listen_backlog", None)

    def claim(self, service: str, setting: str, description: str, factory=None, datagram_protocol=None):
        """The bound listener for this endpoint with *factory* or *datagram_protocol* attached, or None."""
        waiting = self._waiting.get((service, setting, description))
        if not waiting:
            return None
        listener = waiting[0]
        if isinstance(listener, DatagramListener):
            if datagram_protocol is None:
                return None
            listener.protocol.attach(datagram_protocol)
        else:
            if factory is None:
                return None
            listener.factory.attach(factory)
        waiting.pop(0)
        return listener

    def close_unclaimed(self) -> None:
        """Stop listening where no service took the listener (a service that does not use it)."""
        for (service, setting, description), listeners in self._waiting.items():
            for listener in listeners:
                log.warn("{service}: {setting} endpoint {endpoint} is not used by the service; closed",
                         service=service, setting=setting, endpoint=description)
                listener.stopService()
        self._waiting.clear()
