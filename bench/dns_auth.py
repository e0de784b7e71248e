"""Benchmark: authoritative DNS queries/s with dnsperf — ours (``dns``), Twisted's
stock ``twistd dns --bindzone`` and BIND (``named``), same zone, same query mix
(answers, CNAME, NXDOMAIN, NODATA, referral), one after the other in one run,
one worker each (BIND ``-n 1 -U 1``; dnsperf ``-c 1 -T 1``), on loopback.

    python bench/dns_auth.py [--seconds 10] [--rounds 2] [--mode udp|tcp] [--pin 1,0] [--only ours,bind,twisted]

Runs are interleaved over --rounds (the machine is shared and its load
drifts); prints every run, each server's best and mean, and our ratios.
Server CPU per query (CPU seconds the server used / queries answered) is
printed too: it is the figure least disturbed by the other load on the
machine, and says how much of a core each server needs per query. Needs dnsperf and
named on PATH (/usr/sbin is searched).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from benchlib import TWISTD, cpu_seconds, stop_process  # noqa: E402
from dns_peers import named_conf  # noqa: E402

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

# Written so that all three parsers read it the same way (stock Twisted's
# BIND parser mishandles owner-less lines, relative RDATA names and one-line
# parenthesised SOAs, so: absolute names, one owner per line).
ZONE = """$TTL 3600
example.test. IN SOA ns1.example.test. hostmaster.example.test. (
    2026112101 3600 900 604800 300 )
example.test. IN NS ns1.example.test.
example.test. IN MX 10 mail.example.test.
example.test. IN A 127.0.0.1
ns1.example.test. IN A 127.0.0.4
mail.example.test. IN A 127.0.0.1
www.example.test. IN A 127.0.0.1
www.example.test. IN AAAA ::1
alias.example.test. IN CNAME www.example.test.
pool.example.test. IN A 127.0.0.11
pool.example.test. IN A 127.0.0.12
pool.example.test. IN A 127.0.0.13
pool.example.test. IN A 127.0.0.14
lab.example.test. IN NS ns1.lab.example.test.
ns1.lab.example.test. IN A 127.0.0.5
"""

# The mix: 50% positive answers, 10% CNAME, 20% NXDOMAIN, 10% NODATA, 10% referral.
QUERIES = (
    ["www.example.test A", "mail.example.test A", "example.test MX", "pool.example.test A",
     "www.example.test AAAA"] * 2
    + ["alias.example.test A"] * 2
    + ["nope.example.test A", "missing.example.test AAAA", "no.such.example.test A",
       "x.example.test MX"]
    + ["www.example.test MX", "mail.example.test TXT"]
    + ["host.lab.example.test A", "lab.example.test A"]
)


def free_port() -> int:
    # TCP and UDP both free: bind UDP first, then check TCP on the same number.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def wait_answering(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Poll with a real query until the server answers (or exits)."""
    query = bytes.fromhex("123401000001000000000000") + b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
            try:
                s.sendto(query, ("127.0.0.1", port))
                if s.recv(4096)[:2] == b"\x12\x34":
                    return
            except (socket.timeout, ConnectionRefusedError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer on port {port}:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def running(cmd: list[str], port: int, log: Path, cwd: Path):
    if PIN_SERVER is not None:
        cmd = ["taskset", "-c", PIN_SERVER, *cmd]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
    try:
        wait_answering(port, proc, log)
        yield proc
    finally:
        stop_process(proc, 15)


def ours(tmp: Path, zone: Path, port: int):
    config = tmp / "netapps.toml"
    config.write_text(f"""
[netapps]
services = ["dns"]
data_dir = "{tmp / 'data'}"
[dns]
listen = ["tcp:{port}:interface=127.0.0.1", "udp:{port}:interface=127.0.0.1"]
[[dns.zones]]
name = "example.test."
file = "{zone}"
""")
    cmd = [TWISTD, "-n", "--pidfile=", "-l", str(tmp / "ours.log"), "netapps", f"--config={config}"]
    return running(cmd, port, tmp / "ours.out", tmp)


def stock_twisted(tmp: Path, zone: Path, port: int):
    cmd = [TWISTD, "-n", "--pidfile=", "-l", str(tmp / "twisted.log"), "dns",
           f"--bindzone={zone}", f"--port={port}", "--interface=127.0.0.1"]
    return running(cmd, port, tmp / "twisted.out", tmp)


def bind(tmp: Path, zone: Path, port: int):
    named = shutil.which("named", path=SEARCH_PATH)
    workdir = Path(tempfile.mkdtemp(prefix="named-", dir=tmp))
    conf = named_conf(
        workdir, port, ["127.0.0.1"],
        "allow-query { any; };\nminimal-responses yes;\nrate-limit { responses-per-second 0; };",
        f'zone "example.test" {{ type primary; file "{zone}"; }};',
    )
    cmd = [named, "-g", "-n", "1", "-U", "1", "-c", str(conf)]
    return running(cmd, port, tmp / "named.log", workdir)


MODE = "udp"  # dnsperf -m (--mode)


def dnsperf(port: int, queries: Path, seconds: float, outstanding: int) -> tuple[float, float]:
    """(queries/s, dnsperf's own CPU use in cores)."""
    tool = shutil.which("dnsperf", path=SEARCH_PATH)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pin = ["taskset", "-c", PIN_CLIENT] if PIN_CLIENT is not None else []
    result = subprocess.run(
        [*pin, tool, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
         "-c", "1", "-T", "1", "-q", str(outstanding), "-t", "2", "-m", MODE],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    match = re.search(r"Queries per second:\s+([\d.]+)", result.stdout)
    lost = re.search(r"Queries lost:\s+(\d+)", result.stdout)
    if match is None:
        raise RuntimeError(f"dnsperf failed:\n{result.stdout}\n{result.stderr}")
    if lost and int(lost.group(1)):
        print(f"  (dnsperf: {lost.group(1)} queries lost)")
    codes = re.search(r"Response codes:\s+(.*)", result.stdout)
    if codes:
        print(f"  (responses: {codes.group(1)})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    return float(match.group(1)), client_cpu


PIN_SERVER: str | None = None  # CPU lists for taskset (--pin)
PIN_CLIENT: str | None = None

SERVERS = {"ours": ours, "twisted": stock_twisted, "bind": bind}
LABELS = {"ours": "ours (twistd netapps dns)", "twisted": "stock twistd dns", "bind": "BIND named -n 1"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf run length per server")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q: queries in flight")
    parser.add_argument("--only", default="ours,bind,twisted", help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per server, interleaved (the machine is shared: load drifts)")
    parser.add_argument("--pin", metavar="SERVER_CPU,CLIENT_CPU",
                        help="pin the server and dnsperf to these CPUs (taskset), e.g. 1,0")
    parser.add_argument("--mode", choices=["udp", "tcp"], default="udp",
                        help="transport dnsperf uses (tcp: one connection, pipelined queries)")
    args = parser.parse_args()
    global MODE
    MODE = args.mode
    if args.pin:
        global PIN_SERVER, PIN_CLIENT  # noqa: PLW0603
        PIN_SERVER, PIN_CLIENT = args.pin.split(",")
    for tool in ("dnsperf", "named"):
        if shutil.which(tool, path=SEARCH_PATH) is None:
            print(f"needs {tool} (apt-get install dnsperf bind9)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-dns-"))
    try:
        zone = tmp / "example.test.zone"
        zone.write_text(ZONE)
        queries = tmp / "queries.txt"
        queries.write_text("\n".join(QUERIES) + "\n")
        results: dict[str, list[float]] = {}
        cost: dict[str, list[float]] = {}
        for round_no in range(1, args.rounds + 1):
            for name in args.only.split(","):
                port = free_port()
                with SERVERS[name](tmp, zone, port) as proc:
                    cpu_before = cpu_seconds(proc.pid)
                    qps, client_cpu = dnsperf(port, queries, args.seconds, args.outstanding)
                    cpu = (cpu_seconds(proc.pid) - cpu_before) / args.seconds
                results.setdefault(name, []).append(qps)
                cost.setdefault(name, []).append(cpu / qps * 1e6)
                print(f"round {round_no}: {LABELS[name]:28s} {qps:10,.0f} queries/s   server CPU {cpu:4.0%}"
                      f" = {cpu / qps * 1e6:5.1f} us/query   (dnsperf CPU {client_cpu:.0%})", flush=True)
        print()
        best = {name: max(runs) for name, runs in results.items()}
        mean = {name: sum(runs) / len(runs) for name, runs in results.items()}
        for name in results:
            print(f"{LABELS[name]:28s} best {best[name]:10,.0f}   mean {mean[name]:10,.0f} queries/s"
                  f"   server CPU per query: mean {sum(cost[name]) / len(cost[name]):5.1f} us")
        if "ours" in results:
            for peer in ("bind", "twisted"):
                if peer in results:
                    print(f"ours / {LABELS[peer]}: best {best['ours'] / best[peer]:.2f}, "
                          f"mean {mean['ours'] / mean[peer]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
