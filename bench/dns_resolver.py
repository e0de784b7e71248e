"""Benchmark: our ``resolver`` vs Unbound (one thread) over the same BIND hierarchy.

    python bench/dns_resolver.py [--seconds 10] [--rounds 1] [--cold 5] [--outstanding 100]

One ``named`` serves root -> test. -> example.test. (-> other.test.) on four
random 127.x addresses, port 53 (Unbound iterates to port 53 only; BIND
needs the addresses on ``lo``: added for the run and removed, so this needs
root). Then, for both resolvers, started from the same hints:

- cache hits: dnsperf (``-c 1 -T 1``, --outstanding in flight) for
  --seconds on a warm cache (answers, CNAME chain, NXDOMAIN, NODATA);
- cold resolution of a 3-level name (www.example.test: root referral, TLD
  referral, answer): each resolver is restarted --cold times with an empty
  cache, warmed with one unrelated query (``warmup.invalid.``, so process
  start-up and lazy imports are not counted), then timed on the one query;
- a miss below a cached delegation (unique names under a wildcard: one
  upstream query each), 200 queries, median.

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
sys.path.insert(0, str(ROOT / "tests" / "resolver"))
from benchlib import netapps  # noqa: E402
from resolver_peers import (  # noqa: E402
    LoopbackAliases, bind_hierarchy, free_udp_tcp_port, random_loopback_addresses, tool, unbound,
)

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

HIT_QUERIES = [
    "www.example.test A", "alias.example.test A", "mail.example.test A", "example.test MX",
    "ext.example.test A", "www.other.test A", "missing.example.test A", "www.example.test AAAA",
    "a.wild.example.test A", "b.wild.example.test A",
]


def ask(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=10)


def timed(port: int, name: str, rdtype: str = "A") -> float:
    started = time.perf_counter()
    response = ask(port, name, rdtype)
    elapsed = time.perf_counter() - started
    if response.rcode() != dns.rcode.NOERROR or not response.answer:
        raise RuntimeError(f"{name}: {dns.rcode.to_text(response.rcode())}")
    return elapsed


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
        yield pid, port


@contextmanager
def unbound_resolver(workdir: Path, hierarchy, run: int):
    process, port = unbound(workdir / f"unbound{run}", hierarchy)
    try:
        yield process.proc.pid, port
    finally:
        process.stop()


def cold_latency(start, rounds: int) -> list[float]:
    samples = []
    for run in range(rounds):
        with start(run) as (_pid, port):
            ask(port, "warmup.invalid.")
            samples.append(timed(port, "www.example.test."))
    return samples


def delegation_miss_latency(port: int, tag: str, count: int = 200) -> list[float]:
    return [timed(port, f"u{i}-{tag}.wild.example.test.") for i in range(count)]


def hot_path_cost(seconds: float = 1.0) -> float:
    """Microseconds our handler spends on one cache hit (no sockets)."""
    import dns.rrset
    from twisted.internet.task import Clock

    from twisted_netapps.resolver.cache import ResolverCache
    from twisted_netapps.resolver.handler import ClientACL, RecursiveQueryHandler
    from twisted_netapps.resolver.hints import parse_hints
    from twisted_netapps.resolver.wire import parse_client_query, prepare_answer
    from twisted_netapps.stats import ServiceStats

    clock = Clock()
    cache = ResolverCache(clock.seconds)
    handler = RecursiveQueryHandler(
        cache=cache, hints=parse_hints(". 1 NS a.root.\na.root. 1 A 127.0.0.2\n"), reactor=clock,
        stats=ServiceStats("resolver"), acl=ClientACL(["127.0.0.0/8"]),
    )
    query = dns.message.make_query("www.example.test.", "A", use_edns=0).to_wire()
    parsed = parse_client_query(query)
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
    parser.add_argument("--rounds", type=int, default=1, help="interleaved dnsperf rounds")
    parser.add_argument("--cold", type=int, default=5, help="cold-cache restarts per resolver")
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
    print(f"hierarchy (BIND, one process, views): root {addresses[0]}, test. {addresses[1]}, "
          f"example.test. {addresses[2]}, other.test. {addresses[3]}, port 53")
    results: dict[str, dict[str, list[float]]] = {"ours": {}, "unbound": {}}
    try:
        with LoopbackAliases(addresses):
            hierarchy = bind_hierarchy(tmp / "bind", addresses=addresses, port=53)
            try:
                hints = hierarchy.write_hints(tmp / "hints")
                starters = {
                    "ours": lambda run: our_resolver(hints),
                    "unbound": lambda run: unbound_resolver(tmp, hierarchy, run),
                }
                for round_ in range(args.rounds):
                    for name, start in starters.items():
                        with start(100 + round_) as (_pid, port):
                            for line in HIT_QUERIES:
                                ask(port, *line.split())  # warm the cache
                            qps, latency = dnsperf(port, queries, args.seconds, args.outstanding)
                            print(f"  cache hits   {name:8s} {qps:9.0f} q/s  (avg latency {latency:.2f} ms "
                                  f"with {args.outstanding} in flight)")
                            results[name].setdefault("qps", []).append(qps)
                            misses = delegation_miss_latency(port, f"{name}{round_}")
                            results[name].setdefault("miss", []).extend(misses)
                            print(f"  delegation-cached miss {name:8s} median {statistics.median(misses) * 1000:.2f} ms")
                for name, start in starters.items():
                    samples = cold_latency(start, args.cold)
                    results[name]["cold"] = samples
                    print(f"  cold 3-level {name:8s} " + " ".join(f"{s * 1000:.2f}" for s in samples) + " ms")
            finally:
                hierarchy.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ours, theirs = results["ours"], results["unbound"]
    qps_ours, qps_theirs = max(ours["qps"]), max(theirs["qps"])
    cold_ours, cold_theirs = statistics.median(ours["cold"]), statistics.median(theirs["cold"])
    miss_ours, miss_theirs = statistics.median(ours["miss"]), statistics.median(theirs["miss"])
    hot = hot_path_cost()
    print()
    print(f"cache-hit queries/s      ours {qps_ours:8.0f}   unbound {qps_theirs:8.0f}   "
          f"ratio {qps_ours / qps_theirs:.0%} (target >= 50%)")
    print(f"cold 3-level latency     ours {cold_ours * 1000:6.2f} ms  unbound {cold_theirs * 1000:6.2f} ms  "
          f"ratio {cold_ours / cold_theirs:.2f}x (target <= 2x)")
    print(f"miss below cached cut    ours {miss_ours * 1000:6.2f} ms  unbound {miss_theirs * 1000:6.2f} ms  "
          f"ratio {miss_ours / miss_theirs:.2f}x")
    print(f"our handler per cache hit (in process, no sockets): {hot:.1f} us of the "
          f"{1e6 / qps_ours:.1f} us each query costs at {qps_ours:.0f} q/s; the rest is Twisted's UDP "
          f"read/write path and the system calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
