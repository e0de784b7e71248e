"""Benchmark: our ``resolver`` vs Unbound (one thread) over the same BIND hierarchy.

    python bench/dns_resolver.py [--seconds 10] [--rounds 1] [--cold 100] [--misses 200] [--outstanding 100]

One ``named`` serves root -> test. -> example.test. (-> other.test.) on four
random 127.x addresses, port 53 (Unbound iterates to port 53 only; BIND
needs the addresses on ``lo``: added for the run and removed, so this needs
root). Then, for both resolvers, started from the same hints:

- cache hits: dnsperf (``-c 1 -T 1``, --outstanding in flight) for
  --seconds on a warm cache (answers, CNAME chain, NXDOMAIN, NODATA);
- cold resolution of a 3-level name, www.example.cK., in the warm
  processes: the hierarchy has extra TLDs c0., c1., ... that no earlier
  query touched, so the root referral, the TLD referral and the answer are
  all fetched (each name asked once; ours and Unbound interleaved);
- a miss below a cached delegation (unique names under a wildcard: one
  upstream query each).

Latencies are measured with a plain UDP socket (no client codec in the
figure), medians.

Prints each figure, Unbound's from the same run, and the ratios (targets:
cache hits >= 50% of Unbound's QPS; cold resolution within 2x its latency),
plus the in-process cost of our cache-hit path (what profiling attributes
to our code; the rest of each query's time is Twisted's UDP loop and the
syscalls).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from benchlib import netapps  # noqa: E402
from dns_peers import (  # noqa: E402
    LoopbackAliases, bind_hierarchy, free_udp_tcp_port, random_loopback_addresses, tool, unbound,
)

import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402

from twisted_netapps.dnswire import build_query, rcode_of  # noqa: E402

HIT_QUERIES = [
    "www.example.test A", "alias.example.test A", "mail.example.test A", "example.test MX",
    "ext.example.test A", "www.other.test A", "missing.example.test A", "www.example.test AAAA",
    "a.wild.example.test A", "b.wild.example.test A",
]


def ask(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=10)


def timed(port: int, name: str) -> float:
    """Seconds for one A query over a plain socket (the client's own cost kept out)."""
    wire = build_query(0x4242, dns.name.from_text(name), 1, recursion=True, edns_payload=1232)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        started = time.perf_counter()
        sock.send(wire)
        reply = sock.recv(65535)
        elapsed = time.perf_counter() - started
    rcode, ancount = rcode_of(reply), int.from_bytes(reply[6:8], "big")
    if rcode != 0 or not ancount:
        raise RuntimeError(f"{name}: rcode {rcode}, {ancount} answers")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """CPU time *pid* has used so far, all its threads (the scheduler's own count, in ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def dnsperf(port: int, queries: Path, seconds: float, outstanding: int) -> tuple[float, float]:
    result = subprocess.run(
        [tool("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
         "-c", "1", "-T", "1", "-q", str(outstanding)],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    qps = re.search(r"Queries per second:\s+([\d.]+)", result.stdout)
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+)", result.stdout)
    if not qps:
        raise RuntimeError(f"dnsperf failed:\n{result.stdout}\n{result.stderr}")
    lost = re.search(r"Queries lost:\s+(\d+)", result.stdout)
    if lost and int(lost.group(1)):
        print(f"    (dnsperf: {lost.group(1)} queries lost)")
    return float(qps.group(1)), float(latency.group(1)) * 1000


@contextmanager
def our_resolver(hints: Path):
    port = free_udp_tcp_port(["127.0.0.1"])
    with netapps(
        ["resolver"],
        {"resolver": [f"udp:{port}:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"]},
        sets=[f"resolver.root_hints={json.dumps(str(hints))}", "resolver.upstream_port=53"],
    ) as (pid, _listeners):
        yield port, pid


@contextmanager
def unbound_resolver(workdir: Path, hierarchy):
    process, port = unbound(workdir / "unbound", hierarchy)
    try:
        yield port, process.proc.pid
    finally:
        process.stop()


def hot_path_cost(seconds: float = 1.0) -> float:
    """Microseconds our handler spends on one cache hit (no sockets)."""
    import dns.rrset
    from twisted.internet.task import Clock

    from twisted_netapps.resolver.cache import ResolverCache
    from twisted_netapps.resolver.handler import ClientACL, RecursiveQueryHandler
    from twisted_netapps.resolver.hints import parse_hints
    from twisted_netapps.dnswire import parse_plain_query
    from twisted_netapps.resolver.prepared import prepare_answer
    from twisted_netapps.stats import ServiceStats

    clock = Clock()
    cache = ResolverCache(clock.seconds)
    handler = RecursiveQueryHandler(
        cache=cache, hints=parse_hints(". 1 NS a.root.\na.root. 1 A 127.0.0.2\n"), reactor=clock,
        stats=ServiceStats("resolver"), acl=ClientACL(["127.0.0.0/8"]),
    )
    query = dns.message.make_query("www.example.test.", "A", use_edns=0).to_wire()
    parsed = parse_plain_query(query)
    cache.put_answer(parsed.key, prepare_answer(
        dns.name.from_text("www.example.test."), 1, 1, 0,
        [dns.rrset.from_text("www.example.test.", 600, "IN", "A", "192.0.2.80")], [], clock.seconds(),
    ))
    peer = ("127.0.0.1", 5555)
    assert type(handler.handle(query, peer, False)) is bytes
    number = 20000
    total = timeit.timeit(lambda: handler.handle(query, peer, False), number=number)
    return total / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf run length per resolver")
    parser.add_argument("--rounds", type=int, default=1, help="dnsperf rounds (interleaved)")
    parser.add_argument("--cold", type=int, default=100, help="cold 3-level resolutions per resolver")
    parser.add_argument("--misses", type=int, default=200, help="misses below a cached zone cut per resolver")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q: queries in flight")
    args = parser.parse_args()
    for name in ("dnsperf", "named", "unbound", "ip"):
        if tool(name) is None:
            print(f"needs {name} on PATH (apt-get install dnsperf bind9 unbound iproute2)", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("needs root: BIND on port 53 of extra loopback addresses (Unbound iterates to port 53 only)",
              file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="bench-resolver-"))
    queries = tmp / "queries.txt"
    queries.write_text("\n".join(HIT_QUERIES) + "\n")
    addresses = random_loopback_addresses(4, 53)
    print(f"hierarchy (one BIND, a view per address): root {addresses[0]}, test./c*. {addresses[1]}, "
          f"example.test./example.c*. {addresses[2]}, other.test. {addresses[3]}, port 53")
    qps: dict[str, list[float]] = {"ours": [], "unbound": []}
    hit_cpu: dict[str, list[float]] = {"ours": [], "unbound": []}  # server CPU us per cache hit
    cold: dict[str, list[float]] = {"ours": [], "unbound": []}
    miss: dict[str, list[float]] = {"ours": [], "unbound": []}
    try:
        with LoopbackAliases(addresses):
            hierarchy = bind_hierarchy(tmp / "bind", addresses=addresses, port=53, cold_tlds=2 * args.cold)
            try:
                hints = hierarchy.write_hints(tmp / "hints")
                with our_resolver(hints) as (ours, our_pid), unbound_resolver(tmp, hierarchy) as (theirs, their_pid):
                    ports = {"ours": ours, "unbound": theirs}
                    pids = {"ours": our_pid, "unbound": their_pid, "named": hierarchy.named.proc.pid}
                    for port in ports.values():
                        for line in HIT_QUERIES:
                            ask(port, *line.split())  # warm the cache (and each process)
                    for round_ in range(args.rounds):
                        for name, port in ports.items():
                            cpu_start = cpu_seconds(pids[name])
                            result, latency = dnsperf(port, queries, args.seconds, args.outstanding)
                            cpu_used = cpu_seconds(pids[name]) - cpu_start
                            qps[name].append(result)
                            hit_cpu[name].append(cpu_used / (result * args.seconds) * 1e6)
                            print(f"  cache hits {name:8s} {result:9.0f} q/s  (avg latency {latency:.2f} ms, "
                                  f"{args.outstanding} in flight; server CPU {hit_cpu[name][-1]:.1f} us/query)")
                    # Cold: a TLD no earlier query touched, so root referral, TLD
                    # referral and answer are all fetched; interleaved, so load
                    # drift hits both alike.
                    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    for k in range(args.cold):
                        cold["ours"].append(timed(ours, f"www.example.c{k}."))
                        cold["unbound"].append(timed(theirs, f"www.example.c{args.cold + k}."))
                    # Each resolver's CPU per cold resolution (it is idle while the
                    # other works); BIND's covers both resolvers' 3 queries each.
                    cold_cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / args.cold * 1000
                                for name, pid in pids.items()}
                    cold_cpu["named"] /= 2
                    for i in range(args.misses):
                        for name, port in ports.items():
                            miss[name].append(timed(port, f"m{i}-{name}.wild.example.test."))
            finally:
                hierarchy.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def ms(values):
        return statistics.median(values) * 1000

    def spread(values):
        """Interquartile range in ms: how noisy the shared machine was."""
        q1, _median, q3 = statistics.quantiles(values, n=4)
        return f"{q1 * 1000:.2f}-{q3 * 1000:.2f}"

    qps_ours, qps_theirs = max(qps["ours"]), max(qps["unbound"])
    hot = hot_path_cost()
    print()
    print(f"cache-hit queries/s      ours {qps_ours:8.0f}    unbound {qps_theirs:8.0f}    "
          f"ratio {qps_ours / qps_theirs:.0%} (target >= 50%)")
    cpu_ours, cpu_theirs = statistics.mean(hit_cpu["ours"]), statistics.mean(hit_cpu["unbound"])
    print(f"  server CPU per cache hit: ours {cpu_ours:.1f} us, unbound {cpu_theirs:.1f} us "
          f"({cpu_ours / cpu_theirs:.1f}x; the figure least disturbed by other load on the machine)")
    print(f"cold 3-level, median     ours {ms(cold['ours']):6.2f} ms  unbound {ms(cold['unbound']):6.2f} ms  "
          f"ratio {ms(cold['ours']) / ms(cold['unbound']):.2f}x (target <= 2x; {args.cold} each; "
          f"IQR ours {spread(cold['ours'])}, unbound {spread(cold['unbound'])})")
    print(f"  CPU per cold resolution: ours {cold_cpu['ours']:.2f} ms, unbound {cold_cpu['unbound']:.2f} ms "
          f"({cold_cpu['ours'] / cold_cpu['unbound']:.1f}x), named {cold_cpu['named']:.2f} ms per resolver's 3 queries")
    print(f"miss below cached cut    ours {ms(miss['ours']):6.2f} ms  unbound {ms(miss['unbound']):6.2f} ms  "
          f"ratio {ms(miss['ours']) / ms(miss['unbound']):.2f}x ({args.misses} each; "
          f"IQR ours {spread(miss['ours'])}, unbound {spread(miss['unbound'])})")
    print(f"our handler per cache hit (in process, no sockets): {hot:.1f} us of the "
          f"{1e6 / qps_ours:.1f} us each query costs at {qps_ours:.0f} q/s; the rest is Twisted's UDP "
          f"read/write path and the system calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
