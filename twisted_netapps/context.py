"""What a service builder is given: its settings and the daemon's shared pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from twisted.application import service

from twisted_netapps.accounts import AccountStore
from twisted_netapps.errors import ConfigError
from twisted_netapps.fileio import ensure_private_dir
from twisted_netapps.listeners import (
    BoundAddress,
    DatagramListener,
    StreamListener,
    is_datagram,
    parse_datagram,
    parse_stream,
)
from twisted_netapps.stats import ServiceStats


@dataclass
class ServiceContext:
    """Everything ``build(context)`` needs; one per service.

    ``config`` is the whole validated :class:`twisted_netapps.config.Config`,
    for services that cooperate (the SMTP relay asking the ``resolver``'s
    address, say).
    """

    name: str
    settings: Any
    data_dir: Path
    reactor: Any
    stats: ServiceStats
    accounts: AccountStore
    config: Any
    on_bound: Callable[[BoundAddress], None] = field(default=lambda address: None)

    def subdir(self, *parts: str) -> Path:
        """``<data_dir>/<parts...>``, created 0700."""
        return ensure_private_dir(self.data_dir.joinpath(*parts))

    def listeners(
        self,
        stream_factory=None,
        datagram_protocol=None,
        endpoints: list[str] | None = None,
        setting: str = "listen",
    ) -> list[service.IService]:
        """Listener services for *endpoints* (default: ``settings.listen``).

        TCP-style endpoints get *stream_factory*, ``udp:`` ones
        *datagram_protocol*; an endpoint of a kind the service does not
        speak is a configuration error.
        """
        if endpoints is None:
            endpoints = getattr(self.settings, setting)
        where = f"{self.config.source}: {self.name}.{setting}"
        result = []
        for i, description in enumerate(endpoints):
            item = f"{where}[{i}]"
            if is_datagram(description):
                if datagram_protocol is None:
                    raise ConfigError(f"{item}: {self.name} does not speak UDP ({description!r})")
                spec = parse_datagram(description, item)
                result.append(
                    DatagramListener(self.name, description, spec, datagram_protocol, self.reactor, self.on_bound)
                )
            else:
                if stream_factory is None:
                    raise ConfigError(f"{item}: {self.name} speaks only UDP ({description!r})")
                endpoint = parse_stream(self.reactor, description, item)
                result.append(StreamListener(self.name, description, endpoint, stream_factory, self.on_bound))
        return result

    def named_service(self, children: list[service.IService]) -> service.MultiService:
        """A MultiService called ``self.name`` holding *children*."""
        parent = service.MultiService()
        parent.setName(self.name)
        for child in children:
            child.setServiceParent(parent)
        return parent
