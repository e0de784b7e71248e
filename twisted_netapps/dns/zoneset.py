"""The zones a ``dns`` service serves, kept current: reloads, views, NOTIFY.

At start-up every zone is loaded synchronously and a broken one is a
one-line :class:`ConfigError`. Afterwards a zone is reloaded (in a thread:
parsing a big zone must not stall the reactor) when one of its files
changes (mtime polling) or on SIGHUP. A reload that fails is logged as
``file:line: reason`` and the previous version keeps being served; one that
succeeds replaces the zone in every view serving it (their prepared replies
are dropped) and, when the serial changed, NOTIFYs the zone's secondaries.
"""

from __future__ import annotations

import ipaddress
import signal
from dataclasses import dataclass, field
from pathlib import Path

import dns.name
import dns.rdatatype
from twisted.application import service
from twisted.internet import threads
from twisted.internet.defer import gatherResults
from twisted.logger import Logger

from twisted_netapps.addresses import parse_host_port
from twisted_netapps.dns.notify import NotifySender
from twisted_netapps.dns.responder import Responder
from twisted_netapps.dns.zones import LoadedZone, ZoneError, files_changed, load_zone
from twisted_netapps.errors import ConfigError
from twisted_netapps.periodic import PeriodicTask

log = Logger(namespace="netapps.dns")


@dataclass
class ZoneSpec:
    """One configured zone, with paths resolved and ACLs parsed."""

    origin: dns.name.Name
    path: Path
    allow_transfer: list = field(default_factory=list)  # ip_network objects
    notify: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class _View:
    responder: Responder
    origins: set[dns.name.Name] | None  # None: every zone


class ZoneSet(service.Service):
    """Loaded zones by origin, the views serving them, and the reload machinery."""

    def __init__(self, specs: list[ZoneSpec], reactor, stats, *, reload_interval: float,
                 notify_source: str = "127.0.0.1") -> None:
        self.specs = {spec.origin: spec for spec in specs}
        self.reactor = reactor
        self.stats = stats
        self.reload_interval = reload_interval
        self.notify_source = notify_source
        self.zones: dict[dns.name.Name, LoadedZone] = {}
        self.views: list[_View] = []
        self._loading: set[dns.name.Name] = set()
        self._failed_files: dict[dns.name.Name, dict[str, float]] = {}
        self._poll = PeriodicTask("dns: zone file check", reload_interval, self.check_files, reactor)
        self._previous_sighup = None
        self._notify_port = None
        self.notifier = NotifySender(reactor, stats)

    # -- start-up

    def load_all(self) -> None:
        """Load every zone now; the first broken one is a ConfigError (one line)."""
        for origin, spec in self.specs.items():
            try:
                self.zones[origin] = load_zone(origin.to_text(), spec.path)
            except ZoneError as e:
                raise ConfigError(f"dns: zone {origin}: {e}") from None
            log.info("dns: zone {zone} loaded from {path} (serial {serial})",
                     zone=origin.to_text(), path=str(spec.path), serial=self.zones[origin].serial)

    def add_view(self, responder: Responder, origins: set[dns.name.Name] | None) -> None:
        self.views.append(_View(responder, origins))
        self._publish(responder, origins)

    def _publish(self, responder: Responder, origins) -> None:
        zones = {o: z for o, z in self.zones.items() if origins is None or o in origins}
        acl = {o: self.specs[o].allow_transfer for o in zones}
        responder.set_zones(zones, acl)

    def startService(self) -> None:
        super().startService()
        if any(spec.notify for spec in self.specs.values()):
            self._notify_port = self.reactor.listenUDP(0, self.notifier, interface=self.notify_source)
            for origin in self.zones:
                self._send_notify(origin)
        if self.reload_interval > 0:
            self._poll.startService()
        self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)

    def stopService(self):
        super().stopService()
        if self._poll.running:
            self._poll.stopService()
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        self.notifier.stop()
        port, self._notify_port = self._notify_port, None
        if port is not None:
            return port.stopListening()
        return None

    def _sighup(self, signum, frame) -> None:
        # A signal handler runs between bytecodes: hand over to the reactor.
        self.reactor.callFromThread(self.reload, True)
        previous = self._previous_sighup
        if callable(previous):  # another service (e.g. resolver) may want SIGHUP too
            previous(signum, frame)

    # -- reloads

    def check_files(self):
        """The periodic check: reload the zones whose files changed (a Deferred for the batch)."""
        return self.reload(force=False)

    def reload(self, force: bool = True):
        """Reload changed zones (all of them if *force*); returns a Deferred for the batch."""
        if force:
            log.info("dns: reloading zones (SIGHUP)")
        pending = []
        for origin, spec in self.specs.items():
            if origin in self._loading:
                continue
            current = self.zones[origin]
            if not force:
                if not files_changed(current):
                    continue
                failed = self._failed_files.get(origin)
                if failed is not None and not _files_differ(failed):
                    continue  # still the same broken edit: reported once already
            self._loading.add(origin)
            d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                          _load_with_mtimes, origin.to_text(), spec.path,
                                          [spec.path, *map(Path, current.files)])
            d.addCallbacks(self._loaded, self._load_failed, callbackArgs=(origin,), errbackArgs=(origin,))
            pending.append(d)
        return gatherResults(pending)

    def _loaded(self, zone: LoadedZone, origin: dns.name.Name) -> None:
        self._loading.discard(origin)
        self._failed_files.pop(origin, None)
        previous = self.zones[origin]
        self.zones[origin] = zone
        for view in self.views:
            if view.origins is None or origin in view.origins:
                self._publish(view.responder, view.origins)
        self.stats.incr("zone_reloads")
        if zone.serial == previous.serial:
            log.warn("dns: zone {zone} reloaded but its serial {serial} did not change: "
                     "secondaries will not transfer it", zone=origin.to_text(), serial=zone.serial)
        else:
            log.info("dns: zone {zone} reloaded (serial {old} -> {new})",
                     zone=origin.to_text(), old=previous.serial, new=zone.serial)
            self._send_notify(origin)

    def _load_failed(self, failure, origin: dns.name.Name) -> None:
        self._loading.discard(origin)
        failure.trap(_ZoneLoadFailed)
        error: _ZoneLoadFailed = failure.value
        self._failed_files[origin] = error.mtimes
        self.stats.incr("zone_errors")
        log.error("dns: zone {zone} not reloaded, still serving serial {serial}: {error}",
                  zone=origin.to_text(), serial=self.zones[origin].serial, error=str(error))

    def _send_notify(self, origin: dns.name.Name) -> None:
        spec = self.specs[origin]
        if spec.notify and self._notify_port is not None:
            zone = self.zones[origin]
            self.notifier.notify(origin, zone.zone.find_rrset(origin, dns.rdatatype.SOA), spec.notify)


class _ZoneLoadFailed(Exception):
    def __init__(self, message: str, mtimes: dict[str, float]) -> None:
        super().__init__(message)
        self.mtimes = mtimes


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return -1.0


def _files_differ(mtimes: dict[str, float]) -> bool:
    return any(_mtime(p) != m for p, m in mtimes.items())


def _load_with_mtimes(origin: str, path: Path, watched: list[Path]) -> LoadedZone:
    """load_zone for the thread pool: a failure carries the mtimes it saw."""
    before = {str(p): _mtime(str(p)) for p in watched}
    try:
        return load_zone(origin, path)
    except ZoneError as e:
        raise _ZoneLoadFailed(str(e), before) from None


def parse_transfer_acl(entries: list[str], where: str) -> list:
    networks = []
    for i, entry in enumerate(entries):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as e:
            raise ConfigError(f"{where}[{i}]: {e}") from None
    return networks


def parse_notify_targets(entries: list[str], where: str) -> list[tuple[str, int]]:
    targets = []
    for i, entry in enumerate(entries):
        try:
            targets.append(parse_host_port(entry, 53))
        except ValueError as e:
            raise ConfigError(f"{where}[{i}]: {entry!r}: expected ADDRESS[:PORT] ({e})") from None
    return targets
