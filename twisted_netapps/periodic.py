"""Periodic work that survives its own failures.

A bare ``LoopingCall`` stops for good the first time its function raises or
its Deferred fails (and the failure surfaces as "Unhandled error in
Deferred"): one full disk during a stats write, and the stats were never
written again. :class:`PeriodicTask` logs one line per failure and keeps its
schedule; a run still going when the next is due is not started twice.
"""

from __future__ import annotations

from typing import Callable

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

log = Logger(namespace="netapps.periodic")


class PeriodicTask(service.Service):
    """Run *function* every *interval* seconds while the service runs.

    *function* may return a Deferred; the next run waits for it. A failure
    (an exception or a failed Deferred) is logged as one warning line naming
    the task and the error, and the schedule goes on. ``now`` runs it once at
    start-up too.
    """

    def __init__(self, name: str, interval: float, function: Callable, clock=None, *, now: bool = False) -> None:
        self.name = name
        self.interval = interval
        self.function = function
        self.clock = clock
        self.now = now
        self.failures = 0
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self.run_once)
        if self.clock is not None:
            self._loop.clock = self.clock
        self._loop.start(self.interval, now=self.now)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def run_once(self) -> defer.Deferred:
        """One run; never fails (the failure is logged), so the loop keeps going."""
        d = defer.maybeDeferred(self.function)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure) -> None:
        self.failures += 1
        error = failure.value
        log.warn("{task}: failed, will retry in {interval}s: {error}",
                 task=self.name, interval=self.interval, error=_describe(error))


def _describe(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    filename = getattr(error, "filename", None)
    if filename:
        text = f"{filename}: {text}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
