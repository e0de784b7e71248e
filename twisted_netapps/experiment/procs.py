"""Child processes of the experiment, the Twisted way: our daemon, and peers whose
stdout lines are milestones (``ready ...``, ``complete ...``, ``totals ...``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from twisted.internet import defer, error, protocol, task

STDERR_KEPT = 4096
DAEMON_START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# twistd from this interpreter, wherever the venv's scripts are.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
NETAPPS = [sys.executable, "-m", "twisted_netapps.cli"]


class ProcessFailed(Exception):
    """A child ended (or said something) other than it should have."""


class LineProcess(protocol.ProcessProtocol):
    """Collects stdout lines, each stamped with the clock's time on arrival."""

    def __init__(self, name: str, clock) -> None:
        self.name = name
        self.clock = clock
        self.lines: list[tuple[float, str]] = []
        self.stderr = b""
        self.exit_code: int | None = None
        self.ended: defer.Deferred = defer.Deferred()
        self._partial = b""
        self._waiters: list[tuple[str, defer.Deferred]] = []

    def outReceived(self, data: bytes) -> None:
        now = self.clock.seconds()
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").strip()
            self.lines.append((now, line))
            for waiter in [w for w in self._waiters if line.startswith(w[0])]:
                self._waiters.remove(waiter)
                waiter[1].callback((now, line))

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-STDERR_KEPT:]

    def processEnded(self, reason) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        waiters, self._waiters = self._waiters, []
        for prefix, d in waiters:
            d.errback(ProcessFailed(f"{self.name} exited ({self.exit_code}) before saying {prefix!r}: "
                                    f"{self.tail()}"))
        self.ended.callback(self.exit_code)

    def tail(self) -> str:
        text = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return text[-1] if text else "no message"

    def line(self, prefix: str) -> defer.Deferred:
        """(time, line) of the first stdout line starting with *prefix* (now or later)."""
        for stamped in self.lines:
            if stamped[1].startswith(prefix):
                return defer.succeed(stamped)
        if self.ended.called:
            return defer.fail(ProcessFailed(f"{self.name} exited ({self.exit_code}): {self.tail()}"))
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((prefix, d))
        return d

    @property
    def running(self) -> bool:
        return not self.ended.called

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after *timeout*; nothing for a child already gone."""
        for signal_name in ("TERM", "KILL"):
            if not self.running:
                return
            try:
                self.transport.signalProcess(signal_name)
            except error.ProcessExitedAlready:
                return
            deadline = self.clock.seconds() + timeout
            while self.running and self.clock.seconds() < deadline:
                await task.deferLater(self.clock, 0.05, lambda: None)


def spawn(reactor, name: str, argv: list[str], *, path: str | None = None) -> LineProcess:
    proto = LineProcess(name, reactor)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reactor.spawnProcess(proto, argv[0], argv, env=env, path=path)
    return proto


class Daemon:
    """``twistd -n netapps`` with some services, on free loopback ports."""

    def __init__(self, proto: LineProcess, data_dir: Path, listeners: list[dict]) -> None:
        self.proto = proto
        self.data_dir = data_dir
        self.listeners = listeners

    def address(self, service: str, transport: str = "tcp") -> tuple[str, int]:
        for listener in self.listeners:
            if listener["service"] == service and listener["transport"] == transport:
                return listener["host"], listener["port"]
        raise LookupError(f"the daemon has no {transport} listener for {service}")

    async def stop(self) -> None:
        await self.proto.stop()


async def start_daemon(reactor, services: list[str], data_dir: Path, *, sets: list[str] = ()) -> Daemon:
    """Start the daemon (every listener on 127.0.0.1, port 0) and return once all are bound."""
    log = data_dir.parent / f"{data_dir.name}-twistd.log"
    argv = [*TWISTD, "-n", "--pidfile=", "-l", str(log), "netapps", f"--data-dir={data_dir}",
            f"--services={','.join(services)}"]
    argv += [f"--listen={service}=tcp:0:interface=127.0.0.1" for service in services]
    argv += [f"--set={s}" for s in sets]
    proto = spawn(reactor, "the daemon", argv)
    listeners_file = data_dir / "run" / "listeners.json"
    deadline = reactor.seconds() + DAEMON_START_TIMEOUT
    while True:
        if not proto.running:
            text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            raise ProcessFailed(f"the daemon exited: {text[-1] if text else proto.tail()}")
        try:
            data = json.loads(listeners_file.read_text())
            if data.get("pid") == proto.transport.pid:
                return Daemon(proto, data_dir, data["listeners"])
        except (FileNotFoundError, ValueError):
            pass
        if reactor.seconds() > deadline:
            await proto.stop()
            raise ProcessFailed(f"the daemon did not start within {DAEMON_START_TIMEOUT:.0f} s (log: {log})")
        await task.deferLater(reactor, 0.05, lambda: None)
