"""Benchmark: uppercase TCP round trips/s (50 persistent connections) and UDP
datagrams/s — ours (twistd netapps) against a minimal asyncio server doing the
same work, with the same load generator, in one run on loopback.

    python bench/uppercase.py [--seconds 5] [--connections 50]
"""

from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import cpu_seconds, netapps, report  # noqa: E402

LINE = b"the quick brown fox jumps over the lazy dog\n"


def tcp_round_trips(port: int, connections: int, seconds: float) -> float:
    """Each connection keeps one line in flight; count answered lines per second."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    expected = LINE.upper()
    done = 0
    for s in socks:
        s.send(LINE)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(0.5):
            buf = key.data
            buf += key.fileobj.recv(65536)
            while len(buf) >= len(expected):
                assert buf[: len(expected)] == expected, bytes(buf[:80])
                del buf[: len(expected)]
                done += 1
                key.fileobj.send(LINE)
    for s in socks:
        s.close()
    return done / seconds


def udp_datagrams(port: int, sockets: int, seconds: float) -> float:
    """*sockets* clients, one datagram in flight each (lost ones re-sent after 50 ms)."""
    sel = selectors.DefaultSelector()
    payload = LINE.rstrip()
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        s.send(payload)
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        events = sel.select(0.05)
        if not events:  # a datagram was lost: re-prime every socket
            for key in sel.get_map().values():
                key.fileobj.send(payload)
        for key, _ in events:
            try:
                key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            done += 1
            key.fileobj.send(payload)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return done / seconds


def measure(pid: int, tcp_port: int, udp_port: int, args) -> tuple[float, float, float, float]:
    cpu0 = cpu_seconds(pid)
    tcp = tcp_round_trips(tcp_port, args.connections, args.seconds)
    cpu1 = cpu_seconds(pid)
    udp = udp_datagrams(udp_port, 16, args.seconds)
    cpu2 = cpu_seconds(pid)
    return tcp, udp, (cpu1 - cpu0) / max(1, tcp * args.seconds) * 1e6, (cpu2 - cpu1) / max(1, udp * args.seconds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    listen = {"uppercase": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]}
    with netapps(["uppercase"], listen, sets=["uppercase.log_requests=false"]) as (pid, listeners):
        ports = {l["transport"]: l["port"] for l in listeners}
        ours = measure(pid, ports["tcp"], ports["udp"], args)

    peer_script = Path(__file__).parent / "asyncio_uppercase_peer.py"
    peer = subprocess.Popen([sys.executable, str(peer_script)], stdout=subprocess.PIPE, text=True)
    try:
        _, tcp_port, udp_port = peer.stdout.readline().split()
        theirs = measure(peer.pid, int(tcp_port), int(udp_port), args)
    finally:
        peer.terminate()
        peer.wait()

    report(f"uppercase TCP, {args.connections} connections", "round trips/s", ours[0], theirs[0], "asyncio",
           f" | server CPU/request: ours {ours[2]:.1f} us, asyncio {theirs[2]:.1f} us")
    report("uppercase UDP, 16 clients", "datagrams/s", ours[1], theirs[1], "asyncio",
           f" | server CPU/datagram: ours {ours[3]:.1f} us, asyncio {theirs[3]:.1f} us")


if __name__ == "__main__":
    main()
