"""Benchmark: POP3 retrieval of N ~4 KiB messages with poplib (RETR each) —
ours vs a private Dovecot on an identical Maildir, in one run on loopback.

    python bench/pop3_retr.py [--messages 1000] [--size 4096] [--rounds 3]
    python bench/pop3_retr.py --large-mb 20 [--rounds 9]     # one big message: MB/s


Both servers run side by side; one session each logs in, warms up, then
times ``RETR 1..N`` (one command at a time, as poplib does) ``--rounds``
times, rounds alternating between the two so both see the same machine
load; each server's best and median round are reported, and the headline
ratio is the median of the paired rounds (ours / the Dovecot round right
after it), which cancels most of the load drift of a shared machine. Prints messages/s, server CPU per message
(/proc schedstat run time of all threads; Dovecot's whole live process tree) and the ratio ours/Dovecot.
Dovecot runs as ``dovecot -F -c <tmp conf>`` with a passwd-file userdb,
``mail_location=maildir:`` on a copy of the same files, its base_dir and
logs in a temp dir, and is stopped in ``finally``. Needs root (Dovecot's
master) and a ``nobody`` user for the mail files.
"""

from __future__ import annotations

import argparse
import os
import poplib
import pwd
import random
import shutil
import statistics
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import netapps, report, run_seconds, stop_process  # noqa: E402

from twisted_netapps.accounts import AccountStore  # noqa: E402
from twisted_netapps.mail.store.maildir import MailStore  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
DOVECOT = shutil.which("dovecot", path="/usr/sbin:/usr/bin:/sbin")


def make_message(i: int, size: int, rng: random.Random) -> bytes:
    head = (
        f"From: sender{i}@bench.test\r\nTo: {USER}@example.test\r\nSubject: bench message {i}\r\n"
        f"Message-ID: <{i}@bench.test>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n"
    ).encode()
    lines = []
    total = len(head)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(10))
        if rng.random() < 0.05:
            line = "." + line  # dot-stuffing on the wire
        lines.append(line.encode() + b"\r\n")
        total += len(lines[-1])
    return head + b"".join(lines)


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of *root_pid* and all its live descendants (reaped ones are in cutime/cstime)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            total += run_seconds(pid)
        except OSError:
            continue
        stack.extend(children.get(pid, []))
    return total


class Session:
    """One logged-in poplib session and a way to read the server's CPU time."""

    def __init__(self, host: str, port: int, count: int | None, cpu_of, *, retr_count: int | None = None) -> None:
        self.client = poplib.POP3(host, port, timeout=30)
        self.client.user(USER)
        self.client.pass_(PASSWORD)
        if count is not None:
            listed, _size = self.client.stat()
            if listed != count:
                raise RuntimeError(f"{host}:{port} lists {listed} messages, expected {count}")
        self.count = count if count is not None else retr_count
        self.cpu_of = cpu_of
        self.best = (0.0, 0.0)  # (msg/s, CPU s per message) of the fastest round
        self.rounds: list[tuple[float, float]] = []  # (msg/s, CPU s per message) of every round
        for n in range(1, min(self.count, 50) + 1):  # warm-up
            self.client.retr(n)

    def round(self) -> None:
        cpu_before, start = self.cpu_of(), time.perf_counter()
        for n in range(1, self.count + 1):
            self.client.retr(n)
        elapsed, cpu = time.perf_counter() - start, self.cpu_of() - cpu_before
        self.rounds.append((self.count / elapsed, cpu / self.count))
        if self.count / elapsed > self.best[0]:
            self.best = (self.count / elapsed, cpu / self.count)

    def close(self) -> None:
        self.client.quit()


# The floor for any CPython+Twisted POP3 server: a Twisted protocol that answers
# every command with one precomputed ~4 KiB RETR reply (no parsing, no file,
# TCP_NODELAY, sent straight to the socket). Measured in the same run, it shows
# how much of the gap to Dovecot is the runtime rather than our code.
FLOOR_SERVER = r"""
import sys
from twisted.internet import protocol, reactor
size = int(sys.argv[1])
line = b"alpha beta gamma delta epsilon zeta eta theta iota kappa\r\n"
reply = b"+OK %d octets\r\n" % size + line * (size // len(line)) + b".\r\n"
class Floor(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(b"+OK floor\r\n")
    def dataReceived(self, data):
        self.transport.getHandle().send(b"+OK\r\n" if data[:4] in (b"USER", b"PASS", b"QUIT") else reply)
port = reactor.listenTCP(0, protocol.Factory.forProtocol(Floor), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


@contextmanager
def twisted_floor(size: int):
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(size)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        yield int(proc.stdout.readline()), proc.pid
    finally:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dovecot_conf(tmp: Path, port: int, passwd: Path) -> str:
    return f"""
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot-info.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{tmp}/mail/%u
pop3_uidl_format = %f
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
}}
"""


@contextmanager
def private_dovecot(source_maildir: Path):
    """Yield (port, pid) of a private Dovecot serving a copy of *source_maildir* as USER's."""
    if DOVECOT is None:
        raise SystemExit("dovecot not installed (apt-get install dovecot-pop3d)")
    nobody = pwd.getpwnam("nobody")
    tmp = Path(tempfile.mkdtemp(prefix="dovecot-bench-"))
    tmp.chmod(0o755)
    proc = None
    try:
        maildir = tmp / "mail" / USER
        shutil.copytree(source_maildir, maildir)
        for path in [tmp / "mail", *maildir.rglob("*"), maildir]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        passwd = tmp / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{nobody.pw_uid}:{nobody.pw_gid}::{maildir}::\n")
        port = free_port()
        conf = tmp / "dovecot.conf"
        conf.write_text(dovecot_conf(tmp, port, passwd))
        proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (tmp / "dovecot.log").read_text() if (tmp / "dovecot.log").exists() else ""
                    raise RuntimeError(f"dovecot did not start: {log}")
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        stop_process(proc, 15)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def both_servers(messages: list[bytes]):
    """Ours and a private Dovecot serving the same *messages*; yields ((host, port, pid), (port, pid))."""
    keep = Path(tempfile.mkdtemp(prefix="pop3-bench-src-"))
    try:
        with netapps(["pop3"], {"pop3": ["tcp:0:interface=127.0.0.1"]}) as (pid, listeners):
            data_dir = next(
                Path(a.split("=", 1)[1]) for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                if a.startswith("--data-dir=")
            )
            AccountStore(data_dir).add(USER, PASSWORD, log2_n=10)  # re-read per login: no restart needed
            store = MailStore(data_dir / "mail")
            for m in messages:
                store.deliver(USER, m)
            # Dovecot gets a copy of the same files (same unique names, same bytes).
            shutil.copytree(data_dir / "mail" / USER, keep / USER, ignore=shutil.ignore_patterns("netapps-*"))
            with private_dovecot(keep / USER) as peer:
                yield (listeners[0]["host"], listeners[0]["port"], pid), peer
    finally:
        shutil.rmtree(keep, ignore_errors=True)


def large_message(megabytes: int, rounds: int) -> int:
    """RETR of one *megabytes* MB message, rounds alternating; MB/s and server CPU per MB."""
    size = megabytes * 1024 * 1024
    message = make_message(0, size, random.Random(4))
    with both_servers([message]) as ((host, port, pid), (peer_port, peer_pid)):
        ours = Session(host, port, 1, lambda: run_seconds(pid))
        peer = Session("127.0.0.1", peer_port, 1, lambda: tree_cpu(peer_pid))
        for _ in range(rounds):
            for session in (ours, peer):
                session.round()
        for session in (ours, peer):
            session.close()
    mb = len(message) / 1e6
    print(f"POP3 RETR of one {megabytes} MiB message ({len(message):,} octets; poplib, one session each, "
          f"{rounds} alternating rounds)")
    for name, session in (("ours", ours), ("dovecot", peer)):
        rates = [r * mb for r, _c in session.rounds]
        cpu = statistics.median(c for _r, c in session.rounds) / mb
        print(f"  {name + ':':9}best {max(rates):7.1f} MB/s  median {statistics.median(rates):7.1f} MB/s"
              f"  server CPU (median) {cpu * 1e3:6.2f} ms/MB")
    paired = statistics.median(o[0] / p[0] for o, p in zip(ours.rounds, peer.rounds))
    cpu_ratio = statistics.median(c for _r, c in ours.rounds) / statistics.median(c for _r, c in peer.rounds)
    report("POP3 RETR (large)", "MB/s", ours.best[0] * mb, peer.best[0] * mb, "Dovecot",
           f" (best rounds) | paired-round median ratio {paired:.2f} | CPU/MB ratio ours/Dovecot {cpu_ratio:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--large-mb", type=int, default=0,
                        help="instead: RETR one message of this many MiB, report MB/s")
    args = parser.parse_args()
    if args.large_mb:
        return large_message(args.large_mb, args.rounds)
    rng = random.Random(4)
    messages = [make_message(i, args.size, rng) for i in range(args.messages)]
    with both_servers(messages) as ((host, port, pid), (peer_port, peer_pid)), \
            twisted_floor(args.size) as (floor_port, floor_pid):
        ours = Session(host, port, len(messages), lambda: run_seconds(pid))
        peer = Session("127.0.0.1", peer_port, len(messages), lambda: tree_cpu(peer_pid))
        floor = Session("127.0.0.1", floor_port, None, lambda: run_seconds(floor_pid), retr_count=len(messages))
        # Rounds alternate between the servers, so all see the same machine load.
        for _ in range(args.rounds):
            for session in (ours, peer, floor):
                session.round()
        for session in (ours, peer, floor):
            session.close()
    print(f"POP3 RETR of {args.messages} x ~{args.size} B messages "
          f"(poplib, one session each, {args.rounds} alternating rounds)")
    for name, session in (("ours", ours), ("dovecot", peer), ("floor", floor)):
        cpu = statistics.median(c for _r, c in session.rounds)
        print(f"  {name + ':':9}best {session.best[0]:8,.0f} msg/s  median {statistics.median(r for r, _c in session.rounds):8,.0f} msg/s"
              f"  server CPU (median) {cpu * 1e6:5.0f} us/msg")
    print("  (floor: a bare Twisted protocol sending one fixed reply, no file or parsing: the runtime's limit)")
    # Load on a shared machine drifts: compare each round with the Dovecot round run right after it.
    paired = statistics.median(o[0] / p[0] for o, p in zip(ours.rounds, peer.rounds))
    cpu_ratio = statistics.median(c for _r, c in ours.rounds) / statistics.median(c for _r, c in peer.rounds)
    report("POP3 RETR", "msg/s", ours.best[0], peer.best[0], "Dovecot",
           f" (best rounds) | paired-round median ratio {paired:.2f} | CPU/msg ratio ours/Dovecot {cpu_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
