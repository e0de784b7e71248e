"""Benchmark: the caching proxy against Squid, Varnish, nginx proxy_cache, Twisted's
ReverseProxyResource and ``twistd web --path``, in one run on loopback.

    python bench/proxy_cache.py [--duration 10] [--connections 50] [--only ours,squid,...]

Every server under test runs pinned to CPU 1 (``taskset``), one at a time;
``wrk -t1 -c50`` and the origin (a private nginx that serves the same files
with ``Cache-Control: max-age=3600``) share CPU 0. The caches run as reverse
proxies in front of that origin (ours with ``proxy.mode = "reverse"``).
Scenarios:

- ``hit 1k`` / ``hit 100k``: the same object again and again (warmed first);
- ``miss``: unique URLs (``/1k.txt?u=<n>``), each one an origin fetch that
  is stored (ours writes it to disk, fsync'd in the disk pool).

``twistd web --path`` serves the files itself (its "miss" row is the 1 KiB
file under unique query strings); Twisted's proxy caches nothing, so all its
rows are pass-through. For each run: requests/s and p99 from wrk, and the
server's CPU time per request (schedstat of every thread of its process
tree), steadier than rates on a shared machine. Ratios at the end: 1 KiB
hits vs ``twistd web --path`` (target >= 2), 100 KiB hits vs Squid (>= 1),
misses vs ``twistd web --path`` (>= 1).

Private instances only: every peer gets its own config, ports, cache and
log directories in a temp dir, and is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import netapps, stop_process, tree_run_seconds  # noqa: E402

SERVER_CPU = "1"
CLIENT_CPU = "0"


def tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise SystemExit(f"bench/proxy_cache.py needs {name} (apt-get install it)")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer") from None
            time.sleep(0.1)


@contextmanager
def process(cmd: list[str], log: Path, **kwargs):
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
    try:
        yield proc
    finally:
        stop_process(proc)


def pinned(cpu: str) -> list[str]:
    return [tool("taskset"), "-c", cpu]


# -- the origin and the servers under test ---------------------------------------------------

NGINX_COMMON = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  {http}
}}
"""


@contextmanager
def origin_nginx(work: Path, www: Path, port: int):
    directory = work / "origin"
    directory.mkdir()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_COMMON.format(dir=directory, http=f"""
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port} backlog=511; root {www};
           location / {{ add_header Cache-Control "max-age=3600"; }} }}"""))
    with process(pinned(CLIENT_CPU) + [tool("nginx"), "-c", str(conf), "-p", str(directory)],
                 directory / "out.log") as proc:
        wait_http(f"http://127.0.0.1:{port}/1k.txt")
        yield proc


@contextmanager
def ours(work: Path, port: int, origin: int):
    sets = ['proxy.mode="reverse"', f'proxy.origin="http://127.0.0.1:{origin}"',
            "proxy.max_connections_per_address=10000", "proxy.max_connections=10000"]
    with netapps(["proxy"], {"proxy": [f"tcp:{port}:interface=127.0.0.1"]}, sets, prefix=pinned(SERVER_CPU)) as (
            pid, _listeners):
        yield pid


@contextmanager
def squid(work: Path, port: int, origin: int):
    directory = work / "squid"
    directory.mkdir()
    conf = directory / "squid.conf"
    conf.write_text(f"""http_port 127.0.0.1:{port} accel defaultsite=127.0.0.1:{origin} no-vhost
cache_peer 127.0.0.1 parent {origin} 0 no-query originserver name=origin
cache_peer_access origin allow all
http_access allow all
cache_mem 256 MB
maximum_object_size_in_memory 1 MB
workers 1
pid_filename {directory}/squid.pid
access_log none
cache_store_log none
cache_log {directory}/cache.log
coredump_dir {directory}
shutdown_lifetime 1 seconds
""")
    user = "proxy"
    if os.getuid() == 0:
        conf.write_text(conf.read_text() + f"cache_effective_user {user}\n")
        shutil.chown(directory, user)
    with process(pinned(SERVER_CPU) + [tool("squid"), "-N", "-f", str(conf)], directory / "out.log") as proc:
        yield proc.pid


@contextmanager
def varnish(work: Path, port: int, origin: int):
    directory = work / "varnish"
    directory.mkdir()
    cmd = pinned(SERVER_CPU) + [tool("varnishd"), "-F", "-j", "none", "-a", f"127.0.0.1:{port}",
                                "-b", f"127.0.0.1:{origin}", "-s", "malloc,256m", "-n", str(directory / "work"),
                                "-p", "thread_pools=1"]
    with process(cmd, directory / "out.log") as proc:
        yield proc.pid


@contextmanager
def nginx_cache(work: Path, port: int, origin: int):
    directory = work / "nginx-cache"
    directory.mkdir()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_COMMON.format(dir=directory, http=f"""
  proxy_cache_path {directory}/cache keys_zone=c:32m max_size=512m inactive=1h;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port} backlog=511;
           location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
                        proxy_cache c; add_header X-Cache $upstream_cache_status; }} }}"""))
    with process(pinned(SERVER_CPU) + [tool("nginx"), "-c", str(conf), "-p", str(directory)],
                 directory / "out.log") as proc:
        yield proc.pid


@contextmanager
def twisted_proxy(work: Path, port: int, origin: int):
    script = Path(__file__).parent / "twisted_reverse_proxy.py"
    with process(pinned(SERVER_CPU) + [sys.executable, str(script), str(port), str(origin)],
                 work / "twisted-proxy.log") as proc:
        yield proc.pid


@contextmanager
def twistd_web(work: Path, port: int, origin: int, www: Path):
    twistd = str(Path(sys.executable).parent / "twistd")
    cmd = pinned(SERVER_CPU) + [twistd, "-n", "--pidfile=", "-l", str(work / "twistd-web.log"), "web",
                                "--listen", f"tcp:{port}:interface=127.0.0.1", "--path", str(www)]
    with process(cmd, work / "twistd-web.out") as proc:
        yield proc.pid


# -- measuring ------------------------------------------------------------------------------

MISS_SCRIPT = """counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/1k.txt?u={run}-" .. counter)
end
"""


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> dict:
    cmd = pinned(CLIENT_CPU) + [tool("wrk"), "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    done = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    if "requests in" not in out:
        raise RuntimeError(f"wrk failed: {done.stderr or out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99_match = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99_match.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": requests, "rate": rate, "p99_ms": float(p99_match.group(1)) * scale,
            "non2xx": int(errors.group(1)) if errors else 0}


def measure(pid: int, url: str, seconds: float, connections: int, script: Path | None = None) -> dict:
    before = tree_run_seconds(pid)
    result = wrk(url, seconds, connections, script)
    result["cpu_us"] = (tree_run_seconds(pid) - before) / max(result["requests"], 1) * 1e6
    return result


SERVERS = ["ours", "squid", "varnish", "nginx", "twisted-proxy", "twistd-web"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--only", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    parser.add_argument("--scenarios", default="hit 1k,hit 100k,miss", help="comma-separated subset of the scenarios")
    args = parser.parse_args()
    wanted = [name for name in args.only.split(",") if name]
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    os.chmod(work, 0o755)
    www = work / "www"
    www.mkdir()
    (www / "1k.txt").write_bytes(os.urandom(768).hex().encode()[:1024])
    (www / "100k.bin").write_bytes(os.urandom(100 * 1024))
    os.chmod(www, 0o755)
    for f in www.iterdir():
        os.chmod(f, 0o644)
    results: dict[str, dict] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 CPUs; servers on CPU {SERVER_CPU}, wrk and origin on "
          f"CPU {CLIENT_CPU})", flush=True)
    try:
        with ExitStack() as stack:
            origin_port = free_port()
            stack.enter_context(origin_nginx(work, www, origin_port))
            for run, name in enumerate(wanted):
                port = free_port()
                starters = {"ours": ours, "squid": squid, "varnish": varnish, "nginx": nginx_cache,
                            "twisted-proxy": twisted_proxy}
                if name == "twistd-web":
                    server = twistd_web(work, port, origin_port, www)
                else:
                    server = starters[name](work, port, origin_port)
                with server as pid:
                    base = f"http://127.0.0.1:{port}"
                    for path in ("/1k.txt", "/100k.bin"):
                        wait_http(base + path)
                        wait_http(base + path)
                    rows = {}
                    scenarios = args.scenarios.split(",")
                    if "hit 1k" in scenarios:
                        rows["hit 1k"] = measure(pid, base + "/1k.txt", args.duration, args.connections)
                    if "hit 100k" in scenarios:
                        rows["hit 100k"] = measure(pid, base + "/100k.bin", args.duration, args.connections)
                    if "miss" in scenarios:
                        script = work / f"miss-{run}.lua"
                        script.write_text(MISS_SCRIPT.format(run=f"{run}{int(time.time())}"))
                        rows["miss"] = measure(pid, base + "/", args.duration, args.connections, script)
                    results[name] = rows
                for scenario, r in rows.items():
                    print(f"{name:14s} {scenario:9s} {r['rate']:9.0f} req/s  p99 {r['p99_ms']:7.2f} ms  "
                          f"{r['cpu_us']:7.1f} us CPU/req  (non-2xx: {r['non2xx']})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    summarize(results)


def summarize(results: dict) -> None:
    def ratio(a, b, scenario_a, scenario_b, field):
        if a not in results or b not in results or scenario_a not in results[a] or scenario_b not in results[b]:
            return None
        x, y = results[a][scenario_a][field], results[b][scenario_b][field]
        return x / y if y else float("nan")

    print("\nratios (ours / peer; req/s, and CPU per request peer / ours: above 1 means ours is better)")
    for peer in [p for p in SERVERS if p != "ours" and p in results]:
        for scenario in ("hit 1k", "hit 100k", "miss"):
            rate = ratio("ours", peer, scenario, scenario, "rate")
            cpu = ratio(peer, "ours", scenario, scenario, "cpu_us")
            if rate is not None:
                print(f"  vs {peer:14s} {scenario:9s} req/s x{rate:5.2f}   CPU x{cpu:5.2f}")
    checks = [
        ("1k hits >= 2x twistd web --path", "twistd-web", "hit 1k", "hit 1k", 2.0),
        ("100k hits >= Squid", "squid", "hit 100k", "hit 100k", 1.0),
        ("misses >= twistd web --path (1k file)", "twistd-web", "miss", "hit 1k", 1.0),
    ]
    print("\ntargets (by req/s and by CPU per request)")
    for title, peer, ours_scenario, peer_scenario, target in checks:
        rate = ratio("ours", peer, ours_scenario, peer_scenario, "rate")
        cpu = ratio(peer, "ours", peer_scenario, ours_scenario, "cpu_us")
        if rate is not None:
            print(f"  {title}: req/s x{rate:.2f}, CPU x{cpu:.2f} (target x{target:g})")


if __name__ == "__main__":
    main()
