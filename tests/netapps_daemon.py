"""Start the real daemon (``twistd -n netapps``) as a subprocess for tests.

Every service's integration tests use this. Ask for port 0 (the default
endpoints below) and read back the real addresses from
``<data_dir>/run/listeners.json``, which the daemon writes once every
listener is bound: no port races, no fixed sleeps.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free right now on *host* (for configs that need a fixed number)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll *predicate* until it returns a truthy value or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Daemon:
    proc: subprocess.Popen
    data_dir: Path
    log_path: Path
    listeners: list[dict] = field(default_factory=list)

    def address(self, service: str, transport: str = "tcp", index: int = 0) -> tuple[str, int]:
        """(host, port) of *service*'s *index*-th listener of *transport*."""
        found = [l for l in self.listeners if l["service"] == service and l["transport"] == transport]
        if len(found) <= index:
            raise LookupError(f"{service} has no {transport} listener #{index}: {self.listeners}")
        return found[index]["host"], found[index]["port"]

    def port(self, service: str, transport: str = "tcp", index: int = 0) -> int:
        return self.address(service, transport, index)[1]

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stats(self) -> dict:
        return json.loads((self.data_dir / "run" / "stats.json").read_text())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


def twistd_command(services, data_dir, *, listen=None, sets=(), config=None, extra=(), twistd_args=()):
    cmd = [TWISTD, "-n", "--pidfile=", "-l", "-", *twistd_args, "netapps", f"--data-dir={data_dir}"]
    if services is not None:
        cmd.append(f"--services={','.join(services) if not isinstance(services, str) else services}")
    if config is not None:
        cmd.append(f"--config={config}")
    for name, endpoints in (listen or {}).items():
        for endpoint in endpoints:
            cmd.append(f"--listen={name}={endpoint}")
    cmd += [f"--set={s}" for s in sets]
    cmd += list(extra)
    return cmd


def start_daemon(
    services,
    data_dir: Path,
    *,
    listen: dict[str, list[str]] | None = None,
    sets=(),
    config: str | None = None,
    extra=(),
    twistd_args=(),
    env: dict | None = None,
    timeout: float = 30.0,
    rlimit_nofile: tuple[int, int] | None = None,
) -> Daemon:
    """Start the daemon and return once every listener is bound.

    Raises RuntimeError (with the daemon's output) if it exits instead.
    """
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)  # the daemon creates data_dir itself, 0700
    log_path = data_dir.parent / f"{data_dir.name}-twistd.log"
    cmd = twistd_command(
        services, data_dir, listen=listen, sets=sets, config=config, extra=extra, twistd_args=twistd_args
    )
    listeners_file = data_dir / "run" / "listeners.json"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, rlimit_nofile)) if rlimit_nofile else None,
        )
    daemon = Daemon(proc, data_dir, log_path)

    def ready():
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{daemon.log}")
        try:
            data = json.loads(listeners_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if data.get("pid") == proc.pid else None

    try:
        daemon.listeners = wait_for(ready, timeout, what="daemon listeners")["listeners"]
    except BaseException:
        daemon.stop(signal.SIGKILL)
        raise
    return daemon


def run_twistd(services, data_dir, timeout: float = 30.0, **kwargs) -> subprocess.CompletedProcess:
    """Run the daemon expecting it to exit (a bad config): returns its output."""
    cmd = twistd_command(services, data_dir, **kwargs)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
