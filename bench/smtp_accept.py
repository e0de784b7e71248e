"""Benchmark: SMTP acceptance with Postfix's smtp-source — ours (each message
fsynced into the Maildir before the 250) vs aiosmtpd writing Maildir with fsync
vs a private Postfix instance (250 after its queue file is fsynced; delivery to
Maildir by virtual(8) follows), in one run on loopback.

    python bench/smtp_accept.py [--messages 5000] [--sessions 20] [--size 4096] [--reuse]

Prints messages/s (smtp-source start to finish), server CPU per message
(/proc utime+stime of the server processes, Postfix's whole process tree) and
the ratios ours/peer.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import cpu_seconds, netapps  # noqa: E402
from smtp_peers import AiosmtpdMaildir, PrivatePostfix, count_files  # noqa: E402

SMTP_SOURCE = shutil.which("smtp-source", path="/usr/sbin:/usr/bin")


def run_source(port: int, messages: int, sessions: int, size: int, reuse: bool) -> float:
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", "sender@bench.test", "-t", "demo@example.test", "-M", "client.bench.test"]
    if reuse:
        cmd.append("-d")  # keep each session's connection for its next message
    start = time.monotonic()
    subprocess.run(cmd + [f"127.0.0.1:{port}"], check=True, timeout=300, stdin=subprocess.DEVNULL)
    return time.monotonic() - start


def wait_delivered(count, expected: int, timeout: float = 60.0) -> float:
    start = time.monotonic()
    while count() < expected and time.monotonic() - start < timeout:
        time.sleep(0.05)
    return time.monotonic() - start


def bench_ours(args) -> tuple[float, float]:
    listen = {"smtp": ["tcp:0:interface=127.0.0.1"]}
    sets = ['smtp.submission_listen=["tcp:0:interface=127.0.0.1"]']
    with netapps(["smtp"], listen, sets) as (pid, listeners):
        port = listeners[0]["port"]
        data_dir = next(Path(a.split("=", 1)[1]) for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                        .split("\0") if a.startswith("--data-dir="))
        new = data_dir / "mail" / "demo" / "new"
        run_source(port, 50, args.sessions, args.size, args.reuse)  # warm-up
        before_files, before_cpu = count_files(new), cpu_seconds(pid)
        elapsed = run_source(port, args.messages, args.sessions, args.size, args.reuse)
        cpu = cpu_seconds(pid) - before_cpu
        stored = count_files(new) - before_files
    if stored != args.messages:
        raise RuntimeError(f"ours: {stored} of {args.messages} messages in the Maildir after the run")
    return args.messages / elapsed, cpu / args.messages


def bench_aiosmtpd(args) -> tuple[float, float]:
    with AiosmtpdMaildir() as peer:
        run_source(peer.port, 50, args.sessions, args.size, args.reuse)
        before_files, before_cpu = peer.delivered(), cpu_seconds(peer.proc.pid)
        elapsed = run_source(peer.port, args.messages, args.sessions, args.size, args.reuse)
        cpu = cpu_seconds(peer.proc.pid) - before_cpu
        stored = peer.delivered() - before_files
    if stored != args.messages:
        raise RuntimeError(f"aiosmtpd: {stored} of {args.messages} messages stored")
    return args.messages / elapsed, cpu / args.messages


def bench_postfix(args) -> tuple[float, float, float]:
    with PrivatePostfix() as peer:
        run_source(peer.port, 50, args.sessions, args.size, args.reuse)
        wait_delivered(peer.delivered, 50)
        before_cpu = peer.cpu_seconds()
        elapsed = run_source(peer.port, args.messages, args.sessions, args.size, args.reuse)
        drain = wait_delivered(peer.delivered, args.messages + 50)
        cpu = peer.cpu_seconds() - before_cpu
        stored = peer.delivered() - 50
    if stored != args.messages:
        raise RuntimeError(f"postfix: {stored} of {args.messages} messages delivered")
    return args.messages / elapsed, cpu / args.messages, args.messages / (elapsed + drain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--reuse", action="store_true", help="smtp-source -d: several messages per connection")
    parser.add_argument("--peers", default="aiosmtpd,postfix")
    args = parser.parse_args()
    if SMTP_SOURCE is None:
        print("smtp-source (postfix) is not installed", file=sys.stderr)
        return 1
    mode = "reused connections" if args.reuse else "one connection per message"
    print(f"smtp-source: {args.messages} messages of {args.size} bytes, {args.sessions} sessions, {mode}")
    ours_rate, ours_cpu = bench_ours(args)
    print(f"  ours (Maildir, fsync before 250):  {ours_rate:7.0f} msg/s  {ours_cpu * 1e3:6.2f} ms CPU/msg")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if "aiosmtpd" in peers:
        rate, cpu = bench_aiosmtpd(args)
        print(f"  aiosmtpd (Maildir, fsync):         {rate:7.0f} msg/s  {cpu * 1e3:6.2f} ms CPU/msg"
              f"  | ours/aiosmtpd: rate {ours_rate / rate:.2f}, CPU {ours_cpu / cpu:.2f}")
    if "postfix" in peers:
        try:
            rate, cpu, end_to_end = bench_postfix(args)
        except RuntimeError as e:
            print(f"  postfix: skipped ({e})")
        else:
            print(f"  postfix (queue fsync before 250):  {rate:7.0f} msg/s  {cpu * 1e3:6.2f} ms CPU/msg"
                  f"  ({end_to_end:.0f} msg/s until all in Maildir)"
                  f"  | ours/postfix: rate {ours_rate / rate:.2f}, CPU {ours_cpu / cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
