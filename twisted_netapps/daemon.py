"""The daemon's root service: every enabled service, named, in one MultiService.

Besides holding the services it

- turns a bind failure into a one-line message and a non-zero exit before
  anything runs half-started;
- writes ``<data_dir>/run/listeners.json`` (where every service actually
  listens; tests and scripts read it when they asked for port 0) and
  ``<data_dir>/run/stats.json`` (every service's counters, refreshed every
  few seconds and at shutdown);
- creates the ``demo`` account on first start and shows its password once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path

from twisted.application import service
from twisted.logger import Logger

from twisted_netapps import registry
from twisted_netapps.accounts import AccountStore
from twisted_netapps.config import Config
from twisted_netapps.connections import DescriptorBudget
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ListenError
from twisted_netapps.fileio import write_atomically
from twisted_netapps.listeners import BoundAddress
from twisted_netapps.logins import LoginGuard
from twisted_netapps.observe import Observatory
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.pools import Pools
from twisted_netapps.stats import StatsRegistry

log = Logger(namespace="netapps")

STATS_INTERVAL = 5.0


class NetappsService(service.MultiService):
    def __init__(self, config: Config, data_dir: Path, reactor, *, foreground: bool = True) -> None:
        super().__init__()
        self.foreground = foreground
        self.config = config
        self.data_dir = data_dir
        self.reactor = reactor
        self.run_dir = data_dir / "run"
        self.accounts = AccountStore(data_dir)
        self.stats = StatsRegistry()
        daemon_settings = config.daemon
        self.logins = LoginGuard(reactor, daemon_settings)
        self.pools = Pools(reactor, disk_threads=daemon_settings.disk_threads, cpu_threads=daemon_settings.cpu_threads)
        self.bound: list[BoundAddress] = []
        self.descriptors = DescriptorBudget(
            open_file_budget(daemon_settings.fd_reserve), refusal_allowance=daemon_settings.fd_reserve // 4
        )
        # A failed write (disk full, EMFILE) is one log line; the next one is tried on schedule.
        self._stats_loop = PeriodicTask("stats.json writer", STATS_INTERVAL, self.write_stats, reactor)
        self.started = time.time()
        self.observatory = Observatory(enabled="status" in config.enabled)
        for name in config.enabled:
            recent, views = self.observatory.for_service(name)
            context = ServiceContext(
                name=name,
                settings=config.services[name],
                data_dir=data_dir,
                reactor=reactor,
                stats=self.stats.for_service(name),
                accounts=self.accounts,
                config=config,
                logins=self.logins,
                pools=self.pools,
                descriptors=self.descriptors,
                recent=recent,
                views=views,
                daemon=self,
                on_bound=self.bound.append,
            )
            child = registry.service_module(name).build(context)
            child.setName(name)
            child.setServiceParent(self)
        budget = self.descriptors
        if budget.limit is not None and budget.caps > budget.limit:
            log.warn(
                "the TCP listeners' max_connections add up to {caps}, more than the {limit} connections "
                "the open-file limit allows (RLIMIT_NOFILE {nofile} minus netapps.fd_reserve); "
                "connections past {limit} will be refused",
                caps=budget.caps, limit=budget.limit, nofile=budget.limit + daemon_settings.fd_reserve,
            )

    def privilegedStartService(self) -> None:
        (self.run_dir / "listeners.json").unlink(missing_ok=True)
        try:
            super().privilegedStartService()
        except ListenError as e:
            log.critical("{error}", error=str(e))
            if not self.foreground:
                # Daemonized: twistd's waiting parent learns of the failure
                # only through an Exception (it writes it to the status pipe
                # and exits 1); anything else leaves the parent hanging.
                raise
            # twistd has redirected sys.stderr into the log by now: the one
            # line goes to the real stderr (and the log), then a clean exit 1
            # with no traceback; the exit releases whatever did bind.
            print(e, file=sys.__stderr__, flush=True)
            raise SystemExit(1) from None

    def startService(self) -> None:
        super().startService()
        password = self.accounts.ensure_demo_account()
        if password is not None:
            log.warn(
                "created account 'demo' with password {password} (shown once; "
                "change it with 'netapps user del demo' and 'netapps user add')",
                password=password,
            )
        self.write_listeners()
        self._stats_loop.startService()
        log.info(
            "netapps started: {services} (data in {data_dir})",
            services=", ".join(self.config.enabled), data_dir=str(self.data_dir),
        )

    def stopService(self):
        if self._stats_loop.running:
            self._stats_loop.stopService()
        d = super().stopService()
        d.addBoth(self._stopped)
        return d

    def _stopped(self, result):
        self.write_stats()
        (self.run_dir / "listeners.json").unlink(missing_ok=True)
        return result

    def write_listeners(self) -> None:
        data = {"pid": os.getpid(), "listeners": [dataclasses.asdict(b) for b in self.bound]}
        write_atomically(self.run_dir / "listeners.json", json.dumps(data, indent=1).encode())

    def write_stats(self) -> None:
        write_atomically(self.run_dir / "stats.json", json.dumps(self.stats.snapshot(), indent=1).encode())


def open_file_budget(reserve: int) -> int:
    """Raise the soft open-file limit to the hard one; return how many may go to connections.

    Distributions start daemons with a soft limit of 1024 and a much higher
    hard limit: raising it is free. *reserve* descriptors stay for upstream
    sockets, files and logs.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warn("cannot raise the open-file limit from {soft} to {hard}: {error}", soft=soft, hard=hard, error=e)
    return max(soft - reserve, 16)
