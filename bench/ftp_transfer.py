"""Benchmark: FTP, ours against vsftpd, pyftpdlib and stock Twisted FTP, one run on loopback.

    python bench/ftp_transfer.py [--size-mb 500] [--seconds 10] [--clients 50]
                                 [--servers ours,vsftpd,pyftpdlib,twisted]

Three figures per server, all over plain TCP, binary mode, PASV:

- one large RETR of a ``--size-mb`` file on tmpfs (/dev/shm), fetched by
  ``curl -o /dev/null``: MB/s and server CPU seconds per GB;
- one large STOR of the same file (``curl -T``) into the server's upload
  directory, also on tmpfs (fsync is free there: this measures the server's
  own work per byte): MB/s and CPU s/GB;
- ``--clients`` concurrent sessions for ``--seconds`` (two load processes,
  bench/ftp_session_load.py), each logging in anonymously, listing the
  root, fetching a 4 KiB file and quitting: sessions/s and server CPU ms
  per session.

Server CPU comes from a cpuacct cgroup per server (vsftpd forks per session
and its children are never reaped into its own counters), else /proc. All
servers run at once and take turns within each round, in a rotating order,
so drifting load on a shared machine hits them alike; medians over the
rounds are reported. Ratios are ours/peer. The targets of issue 9: RETR and STOR
at least 70% of vsftpd's MB/s, sessions/s at least pyftpdlib's. On a shared
machine the CPU figures are steadier than the rates. Needs root (vsftpd),
curl, vsftpd, and pyftpdlib installed in this Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import cpu_seconds, netapps, stop_process  # noqa: E402
from ftp_peers import STOCK_PASSWORD, STOCK_USER, vsftpd_config  # noqa: E402

HERE = Path(__file__).parent
SMALL = b"small file for the session benchmark\n" * 110  # ~4 KiB
ANONYMOUS = "anonymous:bench@example.test"
VSFTPD = shutil.which("vsftpd", path="/usr/sbin:/usr/bin:/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def settled_cpu(pid: int, timeout: float = 5.0) -> float:
    """CPU of *pid* once its per-session children have exited (and been reaped into its counters)."""
    deadline = time.monotonic() + timeout
    while children(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return cpu_seconds(pid)


class CpuMeter:
    """A server's CPU seconds, its forked children included.

    vsftpd forks per session and ignores SIGCHLD, so its children are never
    reaped into its own counters: the server is put in a cgroup (v1
    cpuacct) of its own, which counts every process it starts, finished or
    not. Without cgroups (not root), /proc counters of the process itself.
    """

    CGROUPS = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, name: str, pid: int) -> None:
        self.pid = pid
        self.group: Path | None = self.CGROUPS / f"ftpbench-{name}-{os.getpid()}"
        try:
            self.group.mkdir()
            (self.group / "cgroup.procs").write_text(str(pid))
        except OSError:
            self.close()
            self.group = None

    def seconds(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        return settled_cpu(self.pid)

    def close(self) -> None:
        if self.group is None:
            return
        for _ in range(100):  # empty once the server's processes have exited
            try:
                self.group.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def lay_out(root: Path, big: Path, upload_owner: int | None = None) -> None:
    (root / "pub").mkdir(parents=True)
    (root / "pub" / "small.txt").write_bytes(SMALL)
    os.link(big, root / "big.bin")  # tmpfs hard link: one copy in memory
    (root / "incoming").mkdir()
    if upload_owner is not None:
        os.chown(root / "incoming", upload_owner, upload_owner)
    for path in (root, root / "pub", root / "pub" / "small.txt", root / "big.bin"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


@contextmanager
def server(name: str, work: Path, big: Path):
    """Yield (pid, port, reading user, writing user, upload path) for server *name*."""
    if name == "ours":
        base = work / "ours"
        lay_out(base / "anonymous", big)
        (base / "home").mkdir()
        # 50 clients all come from 127.0.0.1: lift the per-address cap (the peers have none).
        sets = [f'ftp.root="{base}"', 'ftp.anonymous_upload="incoming"', "ftp.tls=false",
                "ftp.max_connections_per_address=10000", "ftp.max_connections=10000"]
        with netapps(["ftp"], {"ftp": ["tcp:0:interface=127.0.0.1"]}, sets=sets) as (pid, listeners):
            port = next(l["port"] for l in listeners if l["service"] == "ftp")
            yield pid, port, ANONYMOUS, ANONYMOUS, "incoming/"
        return
    root = work / name
    port = free_port()
    if name == "vsftpd":
        if VSFTPD is None:
            raise RuntimeError("vsftpd is not installed")
        import pwd

        lay_out(root, big, upload_owner=pwd.getpwnam("ftp").pw_uid)
        conf = work / "vsftpd.conf"
        conf.write_text(vsftpd_config(port, root))
        cmd = [VSFTPD, str(conf)]
        writer, upload = ANONYMOUS, "incoming/"
    else:
        lay_out(root, big)
        cmd = [sys.executable, str(HERE / "ftp_peers.py"), name, str(port), str(root)]
        writer, upload = ANONYMOUS, "incoming/"
        if name == "twisted":  # its anonymous shell is read-only: uploads as a user
            writer, upload = f"{STOCK_USER}:{STOCK_PASSWORD}", ""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield proc.pid, port, ANONYMOUS, writer, upload
    finally:
        stop_process(proc)


def curl(args: list[str]) -> None:
    result = subprocess.run(["curl", "-sS", "--disable-epsv", *args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)}: {result.stderr.strip()}")


def large(meter: CpuMeter, port: int, user: str, path: str, big: Path, upload: bool) -> tuple[float, float]:
    """(MB/s, CPU s per GB) of one large transfer."""
    size = big.stat().st_size
    url = f"ftp://127.0.0.1:{port}/{path}"
    cpu0, t0 = meter.seconds(), time.perf_counter()
    if upload:
        curl(["-u", user, "-T", str(big), url])
    else:
        curl(["-u", user, "-o", "/dev/null", url])
    elapsed = time.perf_counter() - t0
    cpu = meter.seconds() - cpu0
    return size / elapsed / 1e6, cpu / (size / 1e9)


def sessions(meter: CpuMeter, port: int, seconds: float, clients: int) -> tuple[float, float, int]:
    """(sessions/s, CPU ms per session, errors) with *clients* concurrent sessions."""
    loaders = 2
    cmd = [sys.executable, str(HERE / "ftp_session_load.py"), "127.0.0.1", str(port), str(seconds),
           str(clients // loaders), "pub/small.txt"]
    cpu0 = meter.seconds()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(loaders)]
    results = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in procs]
    cpu = meter.seconds() - cpu0
    done = sum(r["sessions"] for r in results)
    elapsed = max(r["seconds"] for r in results)
    return done / elapsed, (cpu / done * 1e3 if done else float("nan")), sum(r["errors"] for r in results)


def median_of(rounds: list[tuple]) -> tuple:
    """Per position, the median over rounds (rates and CPU figures taken separately)."""
    return tuple(statistics.median(values) for values in zip(*rounds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="large transfers per server (medians reported)")
    parser.add_argument("--session-rounds", type=int, default=2)
    parser.add_argument("--servers", default="ours,vsftpd,pyftpdlib,twisted")
    args = parser.parse_args()
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    work = Path(tempfile.mkdtemp(prefix="ftpbench-", dir="/dev/shm"))
    os.chmod(work, 0o755)
    runs: dict[str, dict[str, list]] = {}
    try:
        big = work / "big.bin"
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mb):
                f.write(block)
        print(f"FTP benchmark: {args.size_mb} MB file on tmpfs ({args.rounds} rounds), {args.clients} clients x"
              f" {args.seconds:.0f} s ({args.session_rounds} rounds); servers alternate within each round so all"
              f" see the same machine load; load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} CPUs")
        with ExitStack() as stack:
            running = {}
            for name in names:  # all up at once; only the one measured is busy
                try:
                    pid, port, reader, writer, upload = stack.enter_context(server(name, work, big))
                except (RuntimeError, TimeoutError, OSError) as e:
                    print(f"  {name}: skipped ({e})")
                    continue
                meter = CpuMeter(name, pid)
                stack.callback(meter.close)
                running[name] = (meter, port, reader, writer, upload)
                runs[name] = {"retr": [], "stor": [], "sessions": []}
            for round_ in range(max(args.rounds, args.session_rounds)):
                order = list(running)[round_ % max(len(running), 1):] + list(running)[:round_ % max(len(running), 1)]
                for name in order:
                    meter, port, reader, writer, upload = running[name]
                    if round_ < args.rounds:
                        runs[name]["retr"].append(large(meter, port, reader, "big.bin", big, upload=False))
                        runs[name]["stor"].append(large(meter, port, writer, f"{upload}up-{name}.bin", big, upload=True))
                        for f in work.rglob("up-*.bin"):
                            f.unlink()
                    if round_ < args.session_rounds:
                        runs[name]["sessions"].append(sessions(meter, port, args.seconds, args.clients))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {name: {kind: median_of(values) for kind, values in r.items()} for name, r in runs.items()}
    for name, r in results.items():
        print(f"  {name:10s} RETR {r['retr'][0]:7.0f} MB/s {r['retr'][1]:5.2f} s CPU/GB | "
              f"STOR {r['stor'][0]:6.0f} MB/s {r['stor'][1]:5.2f} s CPU/GB | "
              f"{r['sessions'][0]:6.0f} sessions/s {r['sessions'][1]:5.2f} ms CPU/session"
              f" ({r['sessions'][2]:.0f} errors)")
    ours = results.get("ours")
    if ours:
        def ratio(a: float, b: float) -> str:
            return f"{a / b:.2f}" if b else "n/a"

        for peer, r in results.items():
            if peer == "ours":
                continue
            print(f"  ours/{peer}: RETR {ratio(ours['retr'][0], r['retr'][0])} (CPU/GB {ratio(ours['retr'][1], r['retr'][1])})"
                  f" | STOR {ratio(ours['stor'][0], r['stor'][0])} (CPU/GB {ratio(ours['stor'][1], r['stor'][1])})"
                  f" | sessions/s {ratio(ours['sessions'][0], r['sessions'][0])}"
                  f" (CPU/session {ratio(ours['sessions'][1], r['sessions'][1])})")
    print(f"  load average {os.getloadavg()[0]:.2f} at the end (shared machine: rates are noisy, CPU figures steadier)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
