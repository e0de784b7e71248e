"""What the status service costs the services it watches (issue 12: <= 3%).

For each workload the same daemon runs twice per round, alternating: without
the ``status`` service, and with it and a page open (a client reading the
``/events`` stream, as a browser does). Rounds are paired, so machine noise
hits both; the median ratio of throughputs is the figure.

Workloads: ``dns`` (dnsperf, UDP, the demo zone), ``web`` (wrk -c20 on the
demo index page), ``proxy`` (wrk -c20 through the proxy in reverse mode in
front of the web service: cache hits), ``smtp`` (Postfix's smtp-source, 4 KiB
messages). Besides throughput, the daemon's CPU time per operation (all its
threads), which other load on the machine disturbs less.

    python bench/status_overhead.py [--seconds 5] [--rounds 3] [--only dns,web,proxy,smtp]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from benchlib import cpu_seconds, netapps  # noqa: E402

SEARCH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PageReader:
    """An open status page: reads /events until stopped (counts bytes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
            while not self._stop.is_set():
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                self.bytes += len(data)


def dns_workload(seconds: float):
    port = free_port()
    queries = Path(tempfile.mkdtemp()) / "queries"
    names = ["www.example.test A", "mail.example.test A", "example.test MX", "nope.example.test A",
             "example.test NS", "alias.example.test A"]
    queries.write_text("\n".join(names * 200) + "\n")
    listen = {"dns": [f"udp:{port}:interface=127.0.0.1"]}
    sets = ["dns.views=[]"]

    def run() -> tuple[int, float]:
        tool = shutil.which("dnsperf", path=SEARCH_PATH)
        out = subprocess.run([tool, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                              "-c", "1", "-T", "1", "-q", "100", "-t", "2"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
        completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
        return completed, float(re.search(r"Run time \(s\):\s+([\d.]+)", out).group(1))

    return ["dns"], listen, sets, run, "queries/s"


def wrk(url: str, seconds: float) -> tuple[int, float]:
    result = subprocess.run(["wrk", "-t1", "-c20", f"-d{max(1, round(seconds))}s", url],
                            capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", result.stdout)
    if match is None or "Non-2xx" in result.stdout:
        raise RuntimeError(f"wrk failed: {result.stdout} {result.stderr}")
    return int(match.group(1)), float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)


def web_workload(seconds: float):
    port = free_port()
    listen = {"web": [f"tcp:{port}:interface=127.0.0.1"]}
    sets = ["web.max_connections_per_address=100", "web.access_log=''"]
    return ["web"], listen, sets, lambda: wrk(f"http://127.0.0.1:{port}/index.html", seconds), "requests/s"


def proxy_workload(seconds: float):
    web_port, proxy_port = free_port(), free_port()
    listen = {"web": [f"tcp:{web_port}:interface=127.0.0.1"], "proxy": [f"tcp:{proxy_port}:interface=127.0.0.1"]}
    sets = ["web.access_log=''", 'proxy.mode="reverse"', f'proxy.origin="http://127.0.0.1:{web_port}"',
            "proxy.max_connections_per_address=100"]
    return ["web", "proxy"], listen, sets, lambda: wrk(f"http://127.0.0.1:{proxy_port}/index.html", seconds), \
        "requests/s"


def smtp_workload(seconds: float):
    port = free_port()
    listen = {"smtp": [f"tcp:{port}:interface=127.0.0.1"]}
    sets = ["smtp.submission_listen=[]", "smtp.max_connections_per_address=100"]
    messages = max(200, int(seconds * 80))

    def run() -> tuple[int, float]:
        tool = shutil.which("smtp-source", path=SEARCH_PATH)
        started = time.monotonic()
        subprocess.run([tool, "-c", "-l", "4096", "-m", str(messages), "-s", "10", "-f", "bench@remote.test",
                        "-t", "demo@example.test", f"127.0.0.1:{port}"],
                       capture_output=True, timeout=600, check=True)
        return messages, time.monotonic() - started

    return ["smtp"], listen, sets, run, "messages/s"


WORKLOADS = {"dns": dns_workload, "web": web_workload, "proxy": proxy_workload, "smtp": smtp_workload}


def measure(services, listen, sets, run, with_status: bool) -> tuple[float, float]:
    """(operations per second, daemon CPU microseconds per operation) for one daemon run."""
    listen = dict(listen)
    if with_status:
        status_port = free_port()
        listen["status"] = [f"tcp:{status_port}:interface=127.0.0.1"]
        services = [*services, "status"]
    with netapps(services, listen, sets) as (pid, _):
        run()  # warm-up (caches, the proxy's store)
        before = cpu_seconds(pid)
        if with_status:
            with PageReader(status_port):
                ops, elapsed = run()
        else:
            ops, elapsed = run()
        return ops / elapsed, (cpu_seconds(pid) - before) / ops * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="dns,web,proxy,smtp")
    args = parser.parse_args()
    print(f"{'workload':<8} {'status off':>12} {'status on':>12} {'on/off':>8}  {'CPU/op off':>11} {'on':>8} "
          f"{'on/off':>7}   (medians of {args.rounds} paired rounds)")
    for name in args.only.split(","):
        services, listen, sets, run, unit = WORKLOADS[name](args.seconds)
        rates, cpus = {False: [], True: []}, {False: [], True: []}
        rate_ratios, cpu_ratios = [], []
        for i in range(args.rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            results = {flag: measure(services, listen, sets, run, flag) for flag in order}
            for flag, (rate, cpu) in results.items():
                rates[flag].append(rate)
                cpus[flag].append(cpu)
            rate_ratios.append(results[True][0] / results[False][0])
            cpu_ratios.append(results[True][1] / results[False][1])
        med = statistics.median
        print(f"{name:<8} {med(rates[False]):>12.0f} {med(rates[True]):>12.0f} {med(rate_ratios):>8.3f}  "
              f"{med(cpus[False]):>8.1f} us {med(cpus[True]):>5.1f} us {med(cpu_ratios):>7.3f}   {unit}; "
              f"rate rounds: {', '.join(f'{r:.3f}' for r in rate_ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
