"""Listeners: endpoint strings -> services that bind in ``privilegedStartService``.

Stream listeners use Twisted's endpoint strings (``tcp:2525:interface=127.0.0.1``,
``tcp6:``, ``ssl:``, ``unix:``, ``systemd:``). Twisted has no datagram endpoint
strings, so ``udp:PORT[:interface=ADDR][:maxPacketSize=N]`` is parsed here and
bound with ``listenUDP``.

Both kinds bind in ``privilegedStartService`` (so ports below 1024 work with
twistd's ``-u/-g`` privilege drop) and turn a bind failure into a
:class:`ListenError` with one line naming service, endpoint and reason; the
daemon's root service turns that into a clean non-zero exit.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import Callable

from twisted.application import service
from twisted.internet import endpoints, error
from twisted.logger import Logger

from twisted_netapps.errors import ConfigError, ListenError

log = Logger(namespace="netapps.listen")

DATAGRAM_SCHEMES = ("udp", "udp6")

_REASONS = {
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "address not available on this host",
}


@dataclass(frozen=True)
class BoundAddress:
    """Where a listener actually listens (the real port when 0 was asked for)."""

    service: str
    transport: str  # "tcp", "udp", "unix", ...
    host: str
    port: int | None
    description: str


def is_datagram(description: str) -> bool:
    return description.split(":", 1)[0].strip().lower() in DATAGRAM_SCHEMES


def _split_escaped(description: str) -> list[str]:
    # Same escaping as Twisted's endpoint strings: "\:" is a literal colon.
    parts = re.split(r"(?<!\\):", description)
    return [p.replace("\\:", ":") for p in parts]


@dataclass(frozen=True)
class DatagramSpec:
    port: int
    interface: str
    max_packet_size: int


def parse_datagram(description: str, where: str) -> DatagramSpec:
    """Parse ``udp:PORT[:interface=ADDR][:maxPacketSize=N]`` (``udp6`` defaults to ::)."""
    scheme, *args = _split_escaped(description)
    scheme = scheme.lower()
    positional = [a for a in args if "=" not in a]
    options = dict(a.split("=", 1) for a in args if "=" in a)
    interface = options.pop("interface", "::" if scheme == "udp6" else "")
    max_packet_size = options.pop("maxPacketSize", "65536")
    port_text = options.pop("port", None)
    if port_text is None and positional:
        port_text = positional.pop(0)
    if options or positional or port_text is None:
        raise ConfigError(
            f"{where}: bad endpoint {description!r}: expected udp:PORT[:interface=ADDR][:maxPacketSize=N]"
        )
    try:
        port, size = int(port_text), int(max_packet_size)
    except ValueError:
        raise ConfigError(f"{where}: bad endpoint {description!r}: port must be a number") from None
    if not 0 <= port <= 65535 or not 0 < size <= 65536:
        raise ConfigError(f"{where}: bad endpoint {description!r}: port or packet size out of range")
    return DatagramSpec(port, interface, size)


def parse_stream(reactor, description: str, where: str, *, backlog: int | None = None):
    """A Twisted server endpoint for *description*, or ConfigError.

    *backlog* is added to ``tcp:``/``tcp6:`` endpoints that do not set their own.
    """
    text = description
    if backlog is not None and description.split(":", 1)[0].strip().lower() in ("tcp", "tcp6") \
            and "backlog=" not in description:
        # Twisted's default backlog of 50 makes a burst of connects wait for SYN retransmits.
        text = f"{description}:backlog={backlog}"
    try:
        return endpoints.serverFromString(reactor, text)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise ConfigError(f"{where}: bad endpoint {description!r}: {e}") from None


def _reason(failure_or_exc: BaseException) -> str:
    socket_error = getattr(failure_or_exc, "socketError", None)
    code = getattr(socket_error, "errno", None) or getattr(failure_or_exc, "errno", None)
    if code in _REASONS:
        return _REASONS[code]
    if socket_error is not None:
        return str(getattr(socket_error, "strerror", None) or socket_error)
    return str(failure_or_exc) or type(failure_or_exc).__name__


def _address_of(service_name: str, port, description: str) -> BoundAddress:
    host = port.getHost()
    transport = getattr(host, "type", "unix").lower()
    return BoundAddress(
        service_name,
        transport,
        str(getattr(host, "host", getattr(host, "name", ""))),
        getattr(host, "port", None),
        description,
    )


class _Listener(service.Service):
    """Common part: binds once, remembers the port, reports where it listens."""

    def __init__(self, service_name: str, description: str, on_bound: Callable[[BoundAddress], None]):
        self.service_name = service_name
        self.description = description
        self.on_bound = on_bound
        self.port = None
        self.name = f"{service_name}:{description}"

    def privilegedStartService(self) -> None:
        service.Service.privilegedStartService(self)
        if self.port is not None:  # bound early, before start-up work (twisted_netapps.binding)
            return
        try:
            self.port = self._bind()
        except ListenError:
            raise
        except (error.CannotListenError, OSError) as e:
            raise ListenError(
                f"{self.service_name}: cannot listen on {self.description}: {_reason(e)}"
            ) from None
        address = _address_of(self.service_name, self.port, self.description)
        log.info(
            "{service}: listening on {transport} {host}:{port}",
            service=self.service_name, transport=address.transport,
            host=address.host, port=address.port,
        )
        self.on_bound(address)

    def startService(self) -> None:
        service.Service.startService(self)
        if self.port is None:
            self.privilegedStartService()

    def stopService(self):
        service.Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


class StreamListener(_Listener):
    def __init__(self, service_name, description, endpoint, factory, on_bound):
        super().__init__(service_name, description, on_bound)
        self.endpoint = endpoint
        self.factory = factory

    def _bind(self):
        result = []
        d = self.endpoint.listen(self.factory)
        d.addBoth(result.append)
        if not result:  # every server endpoint we accept binds synchronously
            d.cancel()
            raise ListenError(f"{self.service_name}: {self.description}: endpoint did not bind at start-up")
        outcome = result[0]
        if hasattr(outcome, "value") and hasattr(outcome, "trap"):  # a Failure
            raise outcome.value
        return outcome


class DatagramListener(_Listener):
    def __init__(self, service_name, description, spec: DatagramSpec, protocol, reactor, on_bound):
        super().__init__(service_name, description, on_bound)
        self.spec = spec
        self.protocol = protocol
        self.reactor = reactor

    def _bind(self):
        return self.reactor.listenUDP(
            self.spec.port, self.protocol, interface=self.spec.interface,
            maxPacketSize=self.spec.max_packet_size,
        )
