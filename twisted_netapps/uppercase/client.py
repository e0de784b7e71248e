"""``netapps uppercase``: the textbook TCPClient/UDPClient, made robust.

Plain blocking sockets, as in the textbook: without TEXT it reads lines from
stdin and prints each answer; over UDP a lost datagram (or answer) is retried
after a timeout, and failure is reported after the last try.
"""

from __future__ import annotations

import socket
import sys

DEFAULT_PORT = 12000


class ClientError(Exception):
    pass


def udp_round_trip(host: str, port: int, payload: bytes, *, timeout: float, tries: int) -> bytes:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))  # connected: only the server's answers are accepted
        for attempt in range(1, tries + 1):
            try:
                sock.send(payload)
                return sock.recv(65536)
            except socket.timeout:
                print(f"no answer from {host}:{port} within {timeout}s (try {attempt}/{tries})", file=sys.stderr)
            except ConnectionRefusedError:
                raise ClientError(f"{host}:{port}: nothing listens there (ICMP port unreachable)") from None
    raise ClientError(f"no answer from {host}:{port} over UDP after {tries} tries")


def tcp_session(host: str, port: int, lines, *, timeout: float, out) -> None:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise ClientError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    with sock, sock.makefile("rb") as replies:
        for line in lines:
            sock.sendall(line.rstrip(b"\r\n") + b"\n")
            try:
                answer = replies.readline()
            except socket.timeout:
                raise ClientError(f"no answer from {host}:{port} within {timeout}s") from None
            if not answer:
                raise ClientError(f"{host}:{port} closed the connection")
            out.write(answer.rstrip(b"\r\n") + b"\n")
            out.flush()


def register(subparsers) -> None:
    p = subparsers.add_parser("uppercase", help="talk to the uppercase service (TCP or UDP)")
    p.add_argument("text", nargs="*", help="sentence to send (default: lines from stdin)")
    p.add_argument("--udp", action="store_true", help="use UDP instead of TCP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for an answer")
    p.add_argument("--tries", type=int, default=3, help="UDP: attempts before giving up")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.text:
        lines = [" ".join(args.text).encode("utf-8", "surrogateescape")]
    else:
        lines = (line for line in sys.stdin.buffer)
    out = sys.stdout.buffer
    try:
        if args.udp:
            for line in lines:
                answer = udp_round_trip(args.host, args.port, line.rstrip(b"\r\n"),
                                        timeout=args.timeout, tries=max(1, args.tries))
                out.write(answer.rstrip(b"\r\n") + b"\n")
                out.flush()
        else:
            tcp_session(args.host, args.port, lines, timeout=args.timeout, out=out)
    except ClientError as e:
        print(f"netapps uppercase: {e}", file=sys.stderr)
        return 1
    return 0
