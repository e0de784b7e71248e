"""Slowloris against SMTP: can a normal client still send mail while 1,000 connections trickle?

    python bench/slowloris.py [--connections 1000] [--seconds 90] [--interval 5]
                              [--attackers 1,50] [--deadline 30]

For each attacker layout (1 source address, then the connections spread over
50), the script keeps --connections sockets open to our SMTP listener from
127.0.x.y addresses -- refilling the slots the server closed once a second, as a
persistent attacker does -- and sends one byte of ``NOOP`` every --interval seconds on
each, so no command line is ever complete (the issue's attack: 1,000
connections, one byte every 5 s). Meanwhile a normal client on 127.0.0.1
sends one whole message with smtplib every 0.5 s, and one goes to the
submission port the same way (AUTH-free probe: EHLO, QUIT). Printed per
layout: normal-client success rate and latency (median, max), the attacker's
connections held by the server at the end of the run, refused (421) and cut
at the command deadline.

The daemon runs with its defaults (max_connections 512, 20 per address)
except ``smtp.command_deadline`` (--deadline, 30 s as in the issue's run).
Needs an open-file limit above 2 x --connections (raised here to the hard limit).
"""

from __future__ import annotations

import argparse
import resource
import selectors
import smtplib
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import netapps  # noqa: E402

PAYLOAD = b"NOOP"
REFUSAL = b"421"


class Attacker:
    """Keeps *count* trickling connections to *address* open from *sources* (round robin)."""

    def __init__(self, address, sources, count, interval):
        self.address, self.sources, self.count, self.interval = address, sources, count, interval
        self.selector = selectors.DefaultSelector()
        self.open: dict[socket.socket, dict] = {}
        self.refused = self.cut = self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next_source = 0

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(20)
        for sock in list(self.open):
            sock.close()

    def held(self) -> int:
        """Connections the server has greeted with a 220 and not closed."""
        return sum(1 for state in self.open.values() if state["greeted"])

    def _connect(self):
        source = self.sources[self._next_source % len(self.sources)]
        self._next_source += 1
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source, 0))
        try:
            sock.connect(self.address)
        except BlockingIOError:
            pass
        self.connects += 1
        self.open[sock] = {"greeted": False, "received": b"", "sent": 0}
        self.selector.register(sock, selectors.EVENT_READ)

    def _drop(self, sock):
        state = self.open.pop(sock)
        self.selector.unregister(sock)
        sock.close()
        if state["received"].startswith(REFUSAL):
            self.refused += 1
        elif state["greeted"]:
            self.cut += 1

    def _read(self, sock):
        state = self.open[sock]
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        state["received"] += data
        if state["received"].startswith(b"220"):
            state["greeted"] = True

    def _run(self):
        next_byte = time.monotonic() + self.interval
        next_refill = 0.0
        while not self._stop.is_set():
            # Refill the closed slots once a second (a slow attack, not a connect flood).
            if time.monotonic() >= next_refill:
                next_refill = time.monotonic() + 1.0
                for _ in range(self.count - len(self.open)):
                    self._connect()
            for key, _ in self.selector.select(0.05):
                self._read(key.fileobj)
            if time.monotonic() >= next_byte:
                next_byte += self.interval
                for sock, state in list(self.open.items()):
                    if not state["greeted"]:
                        continue
                    byte = PAYLOAD[state["sent"] % len(PAYLOAD):][:1]
                    try:
                        sock.send(byte)
                        state["sent"] += 1
                    except OSError:
                        self._drop(sock)


def normal_client(smtp_address, submission_address, seconds):
    """One message to port 25's listener and one EHLO to submission every 0.5 s; returns results."""
    results = {"smtp": [], "submission": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            with smtplib.SMTP(*smtp_address, timeout=10, source_address=("127.0.0.1", 0)) as client:
                client.sendmail("bench@example.org", ["demo@example.test"], b"Subject: probe\r\n\r\nhello\r\n")
            results["smtp"].append((True, time.monotonic() - start))
        except (OSError, smtplib.SMTPException):
            results["smtp"].append((False, time.monotonic() - start))
        start = time.monotonic()
        try:
            with smtplib.SMTP(*submission_address, timeout=10, source_address=("127.0.0.1", 0)) as client:
                client.ehlo()
            results["submission"].append((True, time.monotonic() - start))
        except (OSError, smtplib.SMTPException):
            results["submission"].append((False, time.monotonic() - start))
        time.sleep(0.5)
    return results


def address_of(listeners, name):
    for listener in listeners:
        if listener["name"] == name:
            return listener["host"], listener["port"]
    raise KeyError(name)


def run(layout: int, args) -> None:
    sources = [f"127.0.{3 + i // 250}.{1 + i % 250}" for i in range(layout)]
    with netapps(["smtp"], {"smtp": ["tcp:0:interface=127.0.0.1"]},
                 sets=[f"smtp.command_deadline={args.deadline}",
                       'smtp.submission_listen=["tcp:0:interface=127.0.0.1"]']) as (pid, listeners):
        smtp, submission = address_of(listeners, "smtp"), address_of(listeners, "smtp.submission")
        attacker = Attacker(smtp, sources, args.connections, args.interval).start()
        try:
            time.sleep(2.0)  # let the first wave connect and be greeted or refused
            results = normal_client(smtp, submission, args.seconds)
            held = attacker.held()
        finally:
            attacker.stop()
    print(f"\n{args.connections} trickling connections from {layout} address(es), "
          f"one byte every {args.interval:g} s, command_deadline {args.deadline:g} s, {args.seconds:g} s:")
    print(f"  attacker: connects {attacker.connects}, held at the end {held}, "
          f"refused (421) {attacker.refused}, cut at the deadline {attacker.cut}")
    for name, rows in results.items():
        ok = [t for good, t in rows if good]
        rate = 100.0 * len(ok) / len(rows) if rows else 0.0
        median = statistics.median(ok) * 1000 if ok else float("nan")
        worst = max(ok) * 1000 if ok else float("nan")
        print(f"  normal client ({name:10s}): {len(ok)}/{len(rows)} succeeded ({rate:.1f}%), "
              f"latency median {median:.1f} ms, max {worst:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--attackers", default="1,50", help="comma-separated numbers of source addresses")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for layout in (int(n) for n in args.attackers.split(",")):
        run(layout, args)


if __name__ == "__main__":
    main()
