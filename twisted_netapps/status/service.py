"""Service builder for ``status``: the live page, JSON API and /metrics on 127.0.0.1:8000."""

from __future__ import annotations

import dataclasses
import os
import time

from twisted.web import server

from twisted_netapps.auth import make_portal
from twisted_netapps.connections import StreamSettings
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ConfigError
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.settings import setting
from twisted_netapps.status.live import Hub
from twisted_netapps.status.overview import RateTracker, overview
from twisted_netapps.status.web import StatusApp, StatusRealm, StatusResource

COUNTERS = {
    "requests": "HTTP requests to the page, the API and /metrics",
    "event_clients": "live pages (Server-Sent Events streams) opened",
}

LOGIN_POLICIES = ("non-loopback", "always")


@dataclasses.dataclass(frozen=True)
class Settings(StreamSettings):
    listen: list[str] = setting(
        ["tcp:8000:interface=127.0.0.1"],
        "listeners for the status page; off loopback only ssl: endpoints are accepted",
    )
    login: str = setting(
        "non-loopback", 'who must log in (HTTP Basic, accounts store): "non-loopback" peers or "always"',
        choices=LOGIN_POLICIES,
    )
    refresh_interval: float = setting(1.0, "seconds between live updates pushed to open pages", positive=True)

    def validate(self, where: str) -> None:
        for i, endpoint in enumerate(self.listen):
            scheme = endpoint.split(":", 1)[0].lower()
            if scheme in ("tcp", "tcp6") and not _loopback_endpoint(endpoint):
                raise ConfigError(
                    f"{where}.listen[{i}]: {endpoint!r} is reachable from other hosts: serve the status page "
                    "there only over ssl: (HTTP Basic logins must not cross the network in the clear)"
                )


def _loopback_endpoint(endpoint: str) -> bool:
    import ipaddress

    for part in endpoint.replace("\\:", "\x00").split(":"):
        if part.startswith("interface="):
            host = part[len("interface="):].replace("\x00", ":")
            try:
                return ipaddress.ip_address(host).is_loopback
            except ValueError:
                return False
    return False  # no interface: every address


def build(context: ServiceContext):
    s: Settings = context.settings
    daemon = context.daemon
    hub = Hub()
    rates = RateTracker()

    def current() -> dict:
        now = time.time()
        return overview(
            pid=os.getpid(), started=daemon.started, now=now, enabled=daemon.config.enabled,
            bound=daemon.bound, snapshot=daemon.stats.snapshot(), rates=rates.rates,
            views={name: views.names() for name, views in daemon.observatory.views.items()},
        )

    def tick() -> None:
        rates.update(daemon.stats.snapshot(), time.time())
        hub.tick(current())

    for recent in daemon.observatory.recent.values():
        recent.subscribe(hub.event)
    portal = make_portal(StatusRealm(), context.accounts, run=context.pools.cpu)
    app = StatusApp(daemon, hub, portal=portal, logins=context.logins, login=s.login, overview=current)
    site = server.Site(StatusResource(app))
    site.noisy = False
    site.displayTracebacks = False
    site.log = lambda request: context.stats.incr("requests")  # no access log: counted instead
    ticker = PeriodicTask("status: live update", s.refresh_interval, tick, context.reactor)
    return context.named_service([ticker, *context.listeners(site)])
