"""The P2P run with our own peers: one seed capped at u_s, N leechers capped at u_i (and d_i).

Every peer is a ``netapps torrent`` process on its own loopback address,
announcing to our tracker. The leechers start first and say ``ready`` (they
find each other but have nothing to trade); the clock starts when the seed
says ``ready``: process start-up is not distribution time. A leecher's
``complete`` line comes once every piece is SHA-1 verified and fsync'd; the
seed's ``totals`` line on exit gives what it uploaded.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from twisted.internet import defer

from twisted_netapps.experiment.params import SEED_ADDRESS, peer_address
from twisted_netapps.experiment.procs import NETAPPS, LineProcess, ProcessFailed, spawn
from twisted_netapps.experiment.results import RunResult

MIN_TIMEOUT = 60.0


def _peer_argv(command: str, torrent: Path, directory: Path, address: str, upload: float, download: float,
               tracker: str, choker: str, extra: list[str]) -> list[str]:
    return [*NETAPPS, "torrent", command, str(torrent), "--dir", str(directory), "-q", "--bind", address,
            "--upload-rate", str(int(upload)), "--download-rate", str(int(download)),
            "--tracker", tracker, "--choker", choker, *extra]


async def _all(deferreds: list[defer.Deferred], timeout: float, clock) -> list:
    gathered = defer.gatherResults(deferreds, consumeErrors=True)
    gathered.addTimeout(timeout, clock)
    try:
        return await gathered
    except defer.FirstError as e:
        raise e.subFailure.value from None


async def run_swarm(reactor, *, torrent: Path, seed_dir: Path, work: Path, tracker: str, n: int,
                    uploads: list[float], downloads: list[float], server_upload: float, choker: str,
                    churn: bool, size: int, bound: float, repeat: int,
                    children: set[LineProcess], super_seed: bool = False) -> RunResult:
    """One swarm; *children* holds every process while it runs (for clean-up on interrupt)."""
    run_dir = work / f"p2p-{n}-{repeat}"
    leechers = [
        spawn(reactor, f"leecher {i}", _peer_argv(
            "get", torrent, run_dir / f"leecher-{i}", peer_address(i), uploads[i], downloads[i], tracker,
            choker, [] if churn else ["--seed"]))
        for i in range(n)
    ]
    children.update(leechers)
    seed = None
    timeout = max(MIN_TIMEOUT, 10 * bound)
    try:
        await _all([p.line("ready") for p in leechers], timeout, reactor)
        seed = spawn(reactor, "the seed", _peer_argv(
            "seed", torrent, seed_dir, SEED_ADDRESS, server_upload, 0, tracker, choker,
            ["--super-seed"] if super_seed else []))
        children.add(seed)
        started, _ = await seed.line("ready")
        completions = await _all([p.line("complete") for p in leechers], timeout, reactor)
    finally:
        for proc in leechers:
            await proc.stop()
        if seed is not None:
            await seed.stop()
        children.difference_update(leechers + ([seed] if seed else []))
        shutil.rmtree(run_dir, ignore_errors=True)
    finish_times = [stamp - started for stamp, _ in completions]
    totals = [line for _, line in seed.lines if line.startswith("totals")]
    found = re.search(r"uploaded (\d+)", totals[0]) if totals else None
    if found is None:
        raise ProcessFailed(f"the seed did not report its totals: {seed.tail()}")
    return RunResult("p2p", n, repeat, bound, max(finish_times), int(found.group(1)), size, finish_times)
