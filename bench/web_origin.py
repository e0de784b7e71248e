"""Benchmark: the ``web`` origin vs ``twistd web --path`` on the same files.

    python bench/web_origin.py [--duration 10] [--rounds 3] [--connections 50]

Both servers serve one temp directory holding a 1 KiB and a 100 KiB file,
each pinned to CPU 0 (``taskset``) while ``wrk -t1 -cN`` runs pinned to CPU 1.
Rounds alternate between the servers so both see the same machine load. For
each file and server: requests/s, p99 latency, and server CPU time per
request (``/proc/<pid>/task/*/schedstat``: steadier than rates on a shared
machine); the medians over the rounds, and the ratios ours/peer (rate) and
peer/ours (CPU per request: above 1 means ours is cheaper).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import TWISTD, netapps, run_seconds, stop_process  # noqa: E402

FILES = {"1KiB": 1024, "100KiB": 100 * 1024}
LARGE = "large.bin"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def wrk(url: str, seconds: float, connections: int) -> tuple[float, float, int]:
    """(requests/s, p99 ms, requests) from one wrk run pinned to CPU 1."""
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if re.search(r"Non-2xx or 3xx responses", out) or re.search(r"Socket errors", out):
        print(f"  warning ({url}): {out.strip().splitlines()[-3:]}", file=sys.stderr)
    return rate, p99, requests


def measure(pid: int, url: str, seconds: float, connections: int) -> tuple[float, float, float]:
    wrk(url, 1.0, connections)  # warm-up: caches, connection setup
    before = run_seconds(pid)
    rate, p99, requests = wrk(url, seconds, connections)
    cpu_us = (run_seconds(pid) - before) / max(requests, 1) * 1e6
    return rate, p99, cpu_us


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def stream_large(pid: int, url: str, size: int) -> tuple[float, float, int]:
    """One download of the large file with curl (CPU 1): (MB/s, server CPU ms per MB,
    server peak RSS in MiB afterwards). The peak shows no file is held whole."""
    before = run_seconds(pid)
    started = time.monotonic()
    subprocess.run(["taskset", "-c", "1", "curl", "-sS", "-o", "/dev/null", url], check=True)
    elapsed = time.monotonic() - started
    megabytes = size / 1e6
    return megabytes / elapsed, (run_seconds(pid) - before) * 1000 / megabytes, memory_kib(pid, "VmHWM") // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--large-mb", type=int, default=200, help="size of the streamed file (0: skip)")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (apt-get install wrk util-linux)")

    tmp = Path(tempfile.mkdtemp(prefix="web-bench-"))
    root = tmp / "root"
    root.mkdir()
    for name, size in FILES.items():
        (root / f"{name}.bin").write_bytes(os.urandom(size))
    if args.large_mb:
        with open(root / LARGE, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.large_mb):
                f.write(block)
    os.utime(root, (time.time() - 60, time.time() - 60))
    for f in root.iterdir():
        os.utime(f, (time.time() - 60, time.time() - 60))  # settled: cached with a strong ETag

    peer_port = free_port()
    peer = subprocess.Popen(
        ["taskset", "-c", "0", TWISTD, "-n", "--pidfile=", "-l", str(tmp / "peer.log"),
         "web", "--path", str(root), "--listen", f"tcp:{peer_port}:interface=127.0.0.1"],
        stdin=subprocess.DEVNULL,
    )
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    large: dict[str, tuple[float, float, int]] = {}
    try:
        wait_port(peer_port)
        with netapps(["web"], {"web": ["tcp:0:interface=127.0.0.1"]}, sets=[f"web.root={str(root)!r}".replace("'", '"'),
                                                                          f"web.max_connections_per_address={4 * args.connections}"]) as (pid, listeners):
            subprocess.run(["taskset", "-p", "-c", "0", str(pid)], check=True, capture_output=True)
            ours_port = next(l["port"] for l in listeners if l["service"] == "web")
            servers = {"ours": (pid, ours_port), "twistd web": (peer.pid, peer_port)}
            for round_no in range(args.rounds):
                for file_name in FILES:
                    for server, (server_pid, port) in servers.items():
                        url = f"http://127.0.0.1:{port}/{file_name}.bin"
                        results.setdefault((file_name, server), []).append(
                            measure(server_pid, url, args.duration, args.connections)
                        )
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
            if args.large_mb:
                for server, (server_pid, port) in servers.items():
                    url = f"http://127.0.0.1:{port}/{LARGE}"
                    subprocess.run(["curl", "-sS", "-o", "/dev/null", url], check=True)  # digest, page cache
                    large[server] = stream_large(server_pid, url, args.large_mb << 20)
    finally:
        stop_process(peer)
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(f"web origin vs twistd web --path; wrk -t1 -c{args.connections}, {args.duration:.0f}s x {args.rounds} rounds, "
          f"servers on CPU 0, wrk on CPU 1; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)")
    for file_name in FILES:
        medians = {}
        for server in ("ours", "twistd web"):
            runs = results[(file_name, server)]
            medians[server] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
            rate, p99, cpu = medians[server]
            print(f"  {file_name:7s} {server:10s}: {rate:9,.0f} req/s  p99 {p99:7.2f} ms  CPU {cpu:6.1f} us/req")
        ours, peer_m = medians["ours"], medians["twistd web"]
        print(f"  {file_name:7s} ratio     : rate ours/peer {ours[0] / peer_m[0]:.2f}   "
              f"CPU per request peer/ours {peer_m[2] / ours[2]:.2f}")
    for server, (rate, cpu_ms, peak) in large.items():
        print(f"  {args.large_mb} MiB stream, {server:10s}: {rate:7.0f} MB/s  CPU {cpu_ms:5.2f} ms/MB  server peak RSS {peak} MiB")


if __name__ == "__main__":
    main()

