"""What a service builder is given: its settings and the daemon's shared pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from twisted.application import service

from twisted_netapps.accounts import AccountStore
from twisted_netapps.connections import DescriptorBudget, LimitedFactory, StreamSettings
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
from twisted_netapps.logins import LoginGuard
from twisted_netapps.observe import NULL_RECENT, Views
from twisted_netapps.pools import Pools
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
    logins: LoginGuard
    pools: Pools
    descriptors: DescriptorBudget = field(default_factory=DescriptorBudget)
    #: recent events and on-demand views for the status page (see twisted_netapps.observe)
    recent: Any = NULL_RECENT
    views: Views = field(default_factory=Views)
    #: the whole daemon as the status service sees it (a DaemonView); None in unit tests
    daemon: Any = None
    on_bound: Callable[[BoundAddress], None] = field(default=lambda address: None)
    # Listeners the daemon bound before building (twisted_netapps.binding).
    prebound: Any = None

    def subdir(self, *parts: str) -> Path:
        """``<data_dir>/<parts...>``, created 0700."""
        return ensure_private_dir(self.data_dir.joinpath(*parts))

    def listeners(
        self,
        stream_factory=None,
        datagram_protocol=None,
        endpoints: list[str] | None = None,
        setting: str = "listen",
        refuse: bytes | None = None,
    ) -> list[service.IService]:
        """Listener services for *endpoints* (default: ``settings.listen``).

        TCP-style endpoints get *stream_factory*, wrapped per listener in a
        :class:`~twisted_netapps.connections.LimitedFactory` (connection
        limits from the service's :class:`StreamSettings` fields, connection
        log lines and counters; *refuse* is what a connection over a limit
        is told before it is closed). ``udp:`` ones get *datagram_protocol*.
        An endpoint of a kind the service does not speak is a configuration error.
        Endpoints the daemon already bound are handed over, not bound again.
        """
        limits = self.settings if isinstance(self.settings, StreamSettings) else StreamSettings()
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
                    self._prebound(setting, description, datagram_protocol=datagram_protocol)
                    or DatagramListener(self.name, description, spec, datagram_protocol, self.reactor, self.on_bound)
                )
            else:
                if stream_factory is None:
                    raise ConfigError(f"{item}: {self.name} speaks only UDP ({description!r})")
                endpoint = parse_stream(self.reactor, description, item, backlog=limits.listen_backlog)
                factory = LimitedFactory(
                    stream_factory, service=self.name, listener=description, limits=limits,
                    stats=self.stats, refuse=refuse, descriptors=self.descriptors,
                )
                result.append(
                    self._prebound(setting, description, factory=factory)
                    or StreamListener(self.name, description, endpoint, factory, self.on_bound)
                )
        return result

    def _prebound(self, setting: str, description: str, **attach):
        if self.prebound is None:
            return None
        return self.prebound.claim(self.name, setting, description, **attach)

    def named_service(self, children: list[service.IService]) -> service.MultiService:
        """A MultiService called ``self.name`` holding *children*."""
        parent = service.MultiService()
        parent.setName(self.name)
        for child in children:
            child.setServiceParent(parent)
        return parent
