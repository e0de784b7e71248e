"""Bounded thread pools for blocking work, one per kind, so no kind starves another.

Twisted's default pool (``reactor.getThreadPool()``) is one pool for
everything: ten slow DNS lookups in it once held every fsync'd delivery and
every password check behind them. Here each kind of blocking work has its
own pool, sized in ``[netapps]``:

- ``disk``: fsync'd writes, renames, directory scans, reading big files;
- ``cpu``: password hashing (scrypt) and other CPU-bound work.

Network work is never blocking: it runs on the reactor (DNS lookups too).
Pools start with the reactor and stop at its shutdown.
"""

from __future__ import annotations

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool


class Pools:
    def __init__(self, reactor, *, disk_threads: int = 4, cpu_threads: int = 2) -> None:
        self.reactor = reactor
        self._disk = ThreadPool(1, disk_threads, name="netapps-disk")
        self._cpu = ThreadPool(1, cpu_threads, name="netapps-cpu")
        self._started = False

    def start(self) -> None:
        """Start both pools (the daemon does this at start-up) and stop them at reactor shutdown."""
        if self._started:
            return
        self._started = True
        self._disk.start()
        self._cpu.start()
        self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._disk.stop()
            self._cpu.stop()

    def disk(self, function, *args, **kwargs):
        """Run blocking disk work in the disk pool; a Deferred of its result."""
        self.start()
        return threads.deferToThreadPool(self.reactor, self._disk, function, *args, **kwargs)

    def cpu(self, function, *args, **kwargs):
        """Run CPU-bound work (password hashing) in the cpu pool; a Deferred of its result."""
        self.start()
        return threads.deferToThreadPool(self.reactor, self._cpu, function, *args, **kwargs)
