"""What the status service costs the services it watches (issue 12: <= 3%).

For each workload the same daemon runs twice per round, alternating: without
the ``status`` service, and with it and a page open (a client reading the
``/events`` stream, as a browser does). Rounds are paired, so machine noise
hits both; the median ratio of throughputs is the figure.

Workloads: ``dns`` (dnsperf, UDP, the demo zone), ``web`` (wrk -c20 on the
demo index page), ``smtp`` (Postfix's smtp-source, 4 KiB messages).

    python bench/status_overhead.py [--seconds 5] [--rounds 3] [--only dns,web,smtp]
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

from benchlib import netapps  # noqa: E402

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

    def run() -> float:
        tool = shutil.which("dnsperf", path=SEARCH_PATH)
        out = subprocess.run([tool, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                              "-c", "1", "-T", "1", "-q", "100", "-t", "2"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
        return float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))

    return ["dns"], listen, sets, run, "queries/s"


def web_workload(seconds: float):
    port = free_port()
    listen = {"web": [f"tcp:{port}:interface=127.0.0.1"]}
    sets = ["web.max_connections_per_address=100", "web.access_log=''"]

    def run() -> float:
        result = subprocess.run(["wrk", "-t1", "-c20", f"-d{max(1, round(seconds))}s", f"http://127.0.0.1:{port}/index.html"],
                                capture_output=True, text=True, timeout=seconds + 60)
        match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
        if match is None:
            raise RuntimeError(f"wrk failed: {result.stdout} {result.stderr}")
        return float(match.group(1))

    return ["web"], listen, sets, run, "requests/s"


def smtp_workload(seconds: float):
    port = free_port()
    listen = {"smtp": [f"tcp:{port}:interface=127.0.0.1"]}
    sets = ["smtp.submission_listen=[]", "smtp.max_connections_per_address=100"]
    messages = max(200, int(seconds * 80))

    def run() -> float:
        tool = shutil.which("smtp-source", path=SEARCH_PATH)
        started = time.monotonic()
        subprocess.run([tool, "-c", "-l", "4096", "-m", str(messages), "-s", "10", "-f", "bench@remote.test",
                        "-t", "demo@example.test", f"127.0.0.1:{port}"],
                       capture_output=True, timeout=600, check=True)
        return messages / (time.monotonic() - started)

    return ["smtp"], listen, sets, run, "messages/s"


WORKLOADS = {"dns": dns_workload, "web": web_workload, "smtp": smtp_workload}


def measure(services, listen, sets, run, with_status: bool) -> float:
    listen = dict(listen)
    if with_status:
        status_port = free_port()
        listen["status"] = [f"tcp:{status_port}:interface=127.0.0.1"]
        services = [*services, "status"]
    with netapps(services, listen, sets):
        if not with_status:
            return run()
        with PageReader(status_port):
            return run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="dns,web,smtp")
    args = parser.parse_args()
    print(f"{'workload':<8} {'status off':>12} {'status on':>12} {'on/off':>8}   (median of {args.rounds} paired rounds)")
    for name in args.only.split(","):
        services, listen, sets, run, unit = WORKLOADS[name](args.seconds)
        offs, ons, ratios = [], [], []
        for i in range(args.rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            results = {flag: measure(services, listen, sets, run, flag) for flag in order}
            offs.append(results[False])
            ons.append(results[True])
            ratios.append(results[True] / results[False])
        print(f"{name:<8} {statistics.median(offs):>12.0f} {statistics.median(ons):>12.0f} "
              f"{statistics.median(ratios):>8.3f}   {unit}; rounds: {', '.join(f'{r:.3f}' for r in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
