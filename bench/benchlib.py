"""Small shared pieces for bench/ scripts: start our daemon, CPU time, result table.

Convention: ``python bench/<name>.py`` runs ours and the named peer side by
side in one run on loopback and prints both figures and the ratio.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

TWISTD = str(Path(sys.executable).parent / "twistd")


def cpu_seconds(pid: int) -> float:
    """utime+stime of *pid* (and its reaped children) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_seconds(pid: int) -> float:
    """Time *pid* (all its threads) has run on a CPU, from schedstat: nanosecond
    precision, where utime+stime are 10 ms tick samples (too coarse for ~100 ms rounds)."""
    total = 0
    for task_dir in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task_dir / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after *timeout*; nothing for a process already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def netapps(services: list[str], listen: dict[str, list[str]], sets=(), timeout: float = 30.0, prefix=()):
    """Run ``twistd -n netapps`` with *services*; yield (pid, listeners list).

    *prefix* goes before the command (``["taskset", "-c", "1"]`` pins the daemon).
    """
    tmp = Path(tempfile.mkdtemp(prefix="netapps-bench-"))
    cmd = [*prefix, TWISTD, "-n", "--pidfile=", "-l", str(tmp / "twistd.log"), "netapps",
           f"--data-dir={tmp / 'data'}", f"--services={','.join(services)}"]
    cmd += [f"--listen={s}={e}" for s, eps in listen.items() for e in eps]
    cmd += [f"--set={s}" for s in sets]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        listeners_file = tmp / "data" / "run" / "listeners.json"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {(tmp / 'twistd.log').read_text()}")
            try:
                data = json.loads(listeners_file.read_text())
                if data["pid"] == proc.pid:
                    break
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("daemon did not start")
            time.sleep(0.05)
        yield proc.pid, data["listeners"]
    finally:
        stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def tree_run_seconds(root_pid: int) -> float:
    """CPU time (schedstat run time, ns precision) of *root_pid*, its threads and its live descendants."""
    pids, seen = [root_pid], set()
    total = 0
    while pids:
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    total += int((task / "schedstat").read_text().split()[0])
                    pids += [int(c) for c in (task / "children").read_text().split()]
                except (OSError, ValueError, IndexError):
                    continue
        except OSError:
            continue
    return total / 1e9


def report(title: str, unit: str, ours: float, peer: float, peer_name: str, extra: str = "") -> None:
    ratio = ours / peer if peer else float("nan")
    print(f"{title}: ours {ours:,.0f} {unit} | {peer_name} {peer:,.0f} {unit} | ratio {ratio:.2f}{extra}")
