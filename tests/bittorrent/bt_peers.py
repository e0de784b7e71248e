"""Helpers for BitTorrent tests and benchmarks: content, libtorrent sessions, our CLI peer."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from twisted_netapps.experiment.lt_swarm import lt_add, lt_session  # noqa: F401 (the tests' libtorrent peers)

NETAPPS = str(Path(sys.executable).parent / "netapps")


def make_content(path: Path, size: int, seed: int = 0) -> Path:
    """*size* pseudo-random bytes at *path* (fast: repeated SHA-256 stretched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = b"".join(hashlib.sha256(b"%d-%d" % (seed, i)).digest() for i in range(32768))  # 1 MiB
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(hashlib.sha256(b"%d" % i).digest() + chunk[32:] if len(chunk) > 32 else chunk)
            left -= len(chunk)
            i += 1
    return path


def sha256_tree(path: Path) -> dict[str, str]:
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*")) if p.is_file()
    }


def lt_wait(handle, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = handle.status()
        if predicate(status):
            return status
        time.sleep(0.05)
    status = handle.status()
    raise TimeoutError(f"libtorrent: timed out waiting for {what}: state {status.state}, "
                       f"progress {status.progress:.3f}, peers {status.num_peers}, errors {status.errc.message()}")


def netapps_peer(command: str, torrent: Path, directory: Path, *extra: str, log: Path | None = None):
    """Start ``netapps torrent get|seed`` (quiet); its stdout says 'complete ...' when done."""
    cmd = [NETAPPS, "torrent", command, str(torrent), "--dir", str(directory), "-q", *extra]
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
