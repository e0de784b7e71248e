"""Group commit: durable writes of many sessions batched off the reactor thread.

An fsync on the reactor thread would serialise every SMTP session on the
disk. Instead each accepted message becomes a *job* — a function that writes
and fsyncs its files in a worker thread and names the directories whose
entries it changed. Jobs that arrive while a batch is being written wait and
go together in the next batch, whose directories are fsynced once for all of
them. Up to *parallel* batches run at once: concurrent fsyncs share the
file system's journal commits (measured on ext4: 4 writers ~2.5x one). A job's Deferred fires only after its directories are synced, so the
SMTP 250 follows durability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.logger import Logger

from twisted_netapps.fileio import fsync_directory

log = Logger(namespace="netapps.smtp")

Job = Callable[[set], Any]  # job(dirs_to_sync) -> result; blocking, runs in a thread


class GroupCommitter:
    def __init__(self, reactor, *, max_batch: int = 64, parallel: int = 4, run=None) -> None:
        self.reactor = reactor
        # run(f, *args) -> Deferred: the daemon's disk pool (twisted_netapps.pools)
        self._run = run or (lambda f, *args: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args))
        self.max_batch = max_batch
        self.parallel = parallel
        self._pending: list[tuple[Job, defer.Deferred]] = []
        self._running = 0
        self.batches = 0
        self.jobs = 0

    def submit(self, job: Job) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._pending.append((job, d))
        self._maybe_start()
        return d

    def _maybe_start(self) -> None:
        while self._pending and self._running < self.parallel:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            self._running += 1
            self.batches += 1
            self.jobs += len(batch)
            d = self._run(run_batch, [job for job, _ in batch])
            d.addBoth(self._finished, [waiter for _, waiter in batch])

    def _finished(self, outcome, waiters: list[defer.Deferred]) -> None:
        self._running -= 1
        if isinstance(outcome, list):
            for waiter, (ok, value) in zip(waiters, outcome):
                if ok:
                    waiter.callback(value)
                else:
                    waiter.errback(value)
        else:  # the batch itself failed (a directory fsync): nobody is durable
            log.failure("mail: group commit failed", outcome)
            for waiter in waiters:
                waiter.errback(outcome)
        self._maybe_start()


def run_batch(jobs: list[Job]) -> list[tuple[bool, Any]]:
    """Run *jobs* in this (worker) thread, then fsync every directory they touched."""
    dirs: set[Path] = set()
    results: list[tuple[bool, Any]] = []
    for job in jobs:
        try:
            results.append((True, job(dirs)))
        except (OSError, ValueError) as e:  # disk full, bad name...: this job fails, others go on
            results.append((False, e))
    for directory in sorted(dirs):
        fsync_directory(directory)
    return results
