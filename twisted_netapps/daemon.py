"""The daemon's root service: every enabled service, named, in one MultiService.

Start-up, in this order, so that a mistake leaves nothing behind:

1. bind every configured listener (:mod:`twisted_netapps.binding`): a taken
   or privileged port is the one line start-up fails with;
2. create the data directory (and its ``run/``);
3. create the ``demo`` account when a service that logs users in runs
   (``USES_ACCOUNTS = True`` in its ``service.py``) and there is no account
   yet, and show its password once;
4. build every service (zone files, TLS certificates, mail folders...).

Running, it writes ``<data_dir>/run/listeners.json`` (where every listener
actually listens, by name) and ``<data_dir>/run/stats.json`` (every service's
counters, stamped with the pid, start time and up time; refreshed every few
seconds and at shutdown, where it is marked not running). See
:mod:`twisted_netapps.runstate`. It logs one start line and one stop line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Callable

from twisted.application import service
from twisted.logger import Logger

from twisted_netapps import __version__, logfilter, registry
from twisted_netapps.accounts import AccountStore
from twisted_netapps.binding import PreboundListeners
from twisted_netapps.config import Config
from twisted_netapps.connections import DescriptorBudget
from twisted_netapps.context import ServiceContext
from twisted_netapps.errors import ListenError, NetappsError
from twisted_netapps.fileio import ensure_private_dir, hand_over, write_atomically
from twisted_netapps.listeners import BoundAddress
from twisted_netapps.logins import LoginGuard
from twisted_netapps.observe import Observatory
from twisted_netapps.periodic import PeriodicTask
from twisted_netapps.pools import Pools
from twisted_netapps.runstate import DAEMON_KEY, LISTENERS_FILE, RUN_DIR, STATS_FILE, format_duration
from twisted_netapps.stats import StatsRegistry

log = Logger(namespace="netapps")

STATS_INTERVAL = 5.0


def uses_accounts(service_name: str) -> bool:
    """Whether *service_name* logs users in (declared by ``USES_ACCOUNTS = True`` in its module)."""
    return bool(getattr(registry.service_module(service_name), "USES_ACCOUNTS", False))


class NetappsService(service.MultiService):
    def __init__(
        self,
        config: Config,
        data_dir: Path,
        reactor,
        *,
        foreground: bool = True,
        prepare_data_dir: Callable[[list[Path]], None] = lambda paths: None,
        log_options=None,
    ) -> None:
        super().__init__()
        self.log_options = log_options  # twistd's options, for the log observer (logfilter)
        self.foreground = foreground
        self.config = config
        self.data_dir = data_dir
        self.reactor = reactor
        self.run_dir = data_dir / RUN_DIR
        self.stats = StatsRegistry()
        self.started = time.time()
        self.bound: list[BoundAddress] = []
        self.bound_names: list[str] = []  # the listener name of each of self.bound (smtp.submission)
        # A failed write (disk full, EMFILE) is one log line; the next one is tried on schedule.
        self._stats_loop = PeriodicTask("stats.json writer", STATS_INTERVAL, self.write_stats, reactor)

        prebound = PreboundListeners(config, reactor)
        prebound.bind_all(self._bound)
        try:
            created = [ensure_private_dir(data_dir), ensure_private_dir(self.run_dir)]
        except OSError as e:
            raise NetappsError(f"data directory {data_dir}: {e.strerror}") from None
        prepare_data_dir(created)
        self.accounts = AccountStore(data_dir)
        if any(uses_accounts(name) for name in config.enabled):
            self._ensure_demo_account()
        daemon_settings = config.daemon
        self.logins = LoginGuard(reactor, daemon_settings)
        self.pools = Pools(reactor, disk_threads=daemon_settings.disk_threads, cpu_threads=daemon_settings.cpu_threads)
        self.descriptors = DescriptorBudget(
            open_file_budget(daemon_settings.fd_reserve), refusal_allowance=daemon_settings.fd_reserve // 4
        )
        self.observatory = Observatory(enabled="status" in config.enabled)
        for name in config.enabled:  # every ring exists before any service (status included) is built
            self.observatory.for_service(name)
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
                on_bound=lambda address, name=name: self._bound(name, address),
                prebound=prebound,
            )
            child = registry.service_module(name).build(context)
            child.setName(name)
            child.setServiceParent(self)
        prebound.close_unclaimed()
        hand_over(data_dir)  # under twistd -u/-g: what the builders created becomes the target user's
        budget = self.descriptors
        if budget.limit is not None and budget.caps > budget.limit:
            log.warn(
                "the TCP listeners' max_connections add up to {caps}, more than the {limit} connections "
                "the open-file limit allows (RLIMIT_NOFILE {nofile} minus netapps.fd_reserve); "
                "connections past {limit} will be refused",
                caps=budget.caps, limit=budget.limit, nofile=budget.limit + daemon_settings.fd_reserve,
            )

    def _bound(self, name: str, address: BoundAddress) -> None:
        self.bound.append(address)
        self.bound_names.append(name)

    def _ensure_demo_account(self) -> None:
        password = self.accounts.ensure_demo_account()
        if password is not None:
            log.warn(
                "created account 'demo' with password {password} in {path} (shown once; "
                "change it with 'netapps user passwd demo')",
                password=password, path=str(self.accounts.path),
            )

    #: ``text`` or ``json`` (``--log-format``), for the observer handed to twistd
    log_format = "text"

    def setServiceParent(self, parent):
        # twistd builds the Application after makeService and uses its
        # ILogObserver component (when --logger is not given) as the log
        # observer: the Twisted way to choose the log format (and to leave
        # Twisted's per-port lines out, twisted_netapps.logfilter) from a plugin.
        logfilter.install(parent, self.log_options, self.log_format)
        return super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:  # a listener a service made itself, not bound early
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
        self._stats_loop.run_once()  # stamped at once: `netapps stats` works from the start
        log.info(
            "netapps {version} started (pid {pid}): {services}; data in {data_dir}",
            version=__version__, pid=os.getpid(), services=", ".join(self.config.enabled),
            data_dir=str(self.data_dir),
        )
        self.write_listeners()  # last: its presence says the daemon is up (tests wait for it)
        self._stats_loop.startService()

    def stopService(self):
        if self._stats_loop.running:
            self._stats_loop.stopService()
        d = super().stopService()
        d.addBoth(self._stopped)
        return d

    def _stopped(self, result):
        try:
            self.write_stats(running=False)
        except OSError as e:
            log.warn("cannot mark {path} stopped: {error}", path=str(self.run_dir / STATS_FILE), error=e)
        (self.run_dir / LISTENERS_FILE).unlink(missing_ok=True)
        log.info(
            "netapps {version} stopped (pid {pid}) after {uptime}",
            version=__version__, pid=os.getpid(), uptime=format_duration(self._uptime()),
        )
        return result

    def _uptime(self) -> float:
        return time.time() - self.started

    def write_listeners(self) -> None:
        data = {
            "pid": os.getpid(), "version": __version__, "started": self.started,
            "listeners": [
                {"name": name, **dataclasses.asdict(address)} for name, address in zip(self.bound_names, self.bound)
            ],
        }
        write_atomically(self.run_dir / LISTENERS_FILE, json.dumps(data, indent=1).encode())

    def write_stats(self, running: bool = True) -> None:
        stamp = {
            "pid": os.getpid(), "version": __version__, "started": self.started,
            "written": time.time(), "uptime": round(self._uptime(), 3), "running": running,
        }
        data = {DAEMON_KEY: stamp, **self.stats.snapshot()}
        write_atomically(self.run_dir / STATS_FILE, json.dumps(data, indent=1).encode())


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
