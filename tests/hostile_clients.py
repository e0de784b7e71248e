"""Hostile clients for the daemon tests: slowloris tricklers and parallel password guessers.

Both come from a chosen loopback source address (127.0.0.2 stands for the
attacker's host, 127.0.0.1 for a normal client), run for a bounded time and
clean up their sockets and threads.
"""

from __future__ import annotations

import base64
import select
import socket
import threading
import time
from dataclasses import dataclass, field


def connect_from(source: str, address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(address, timeout=timeout, source_address=(source, 0))


@dataclass
class TrickledConnection:
    sock: socket.socket
    first_byte: float | None = None
    closed_at: float | None = None
    received: bytes = b""


@dataclass
class Tricklers:
    """*count* connections from *source*, each sending *payload* one byte every *interval*
    seconds (cycling), in a background thread, until the server closes them or :meth:`stop`."""

    address: tuple[str, int]
    source: str
    count: int = 1
    payload: bytes = b"NOOP"
    interval: float = 0.2
    preamble: bytes = b""  # sent in one piece first (after the greeting)
    connections: list[TrickledConnection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Tricklers":
        for _ in range(self.count):
            sock = connect_from(self.source, self.address)
            sock.setblocking(False)
            self.connections.append(TrickledConnection(sock))
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for connection in self.connections:
            connection.sock.close()

    def open(self) -> list[TrickledConnection]:
        return [c for c in self.connections if c.closed_at is None]

    def _read(self, connection: TrickledConnection) -> None:
        try:
            while True:
                data = connection.sock.recv(65536)
                if not data:
                    connection.closed_at = time.monotonic()
                    return
                connection.received += data
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            connection.closed_at = time.monotonic()

    def _run(self) -> None:
        # Wait for every greeting (or refusal) first, as a real client would.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(not c.received and c.closed_at is None for c in self.connections):
            select.select([c.sock for c in self.open()], [], [], 0.05)
            for connection in self.open():
                self._read(connection)
        for connection in self.open():
            if self.preamble:
                connection.sock.sendall(self.preamble)
        step = 0
        while not self._stop.is_set() and self.open():
            byte = self.payload[step % len(self.payload):][:1]
            now = time.monotonic()
            for connection in self.open():
                self._read(connection)
                if connection.closed_at is not None:
                    continue
                try:
                    connection.sock.send(byte)
                except OSError:
                    connection.closed_at = time.monotonic()
                    continue
                if connection.first_byte is None:
                    connection.first_byte = now
            step += 1
            self._stop.wait(self.interval)
        for connection in self.open():
            self._read(connection)


def serve_repeatedly(action, seconds: float, limit: float = 2.0) -> int:
    """Run *action* (a normal client's whole session) again and again for *seconds*;
    each must finish within *limit* seconds. Returns how many ran."""
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        action()
        took = time.monotonic() - start
        assert took < limit, f"the normal client was held up for {took:.2f}s"
        done += 1
        time.sleep(0.1)
    return done


# ----------------------------------------------------------------- password guessing


@dataclass
class GuessTally:
    answered: int = 0  # the server said "wrong password": one real guess
    refused: int = 0  # refused without checking (login guard) or turned away (connection caps)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answered: int = 0, refused: int = 0) -> None:
        with self.lock:
            self.answered += answered
            self.refused += refused


def _smtp_guesser(address, source, user, stop: threading.Event, tally: GuessTally) -> None:
    n = 0
    while not stop.is_set():
        try:
            with connect_from(source, address, timeout=60) as sock:
                lines = sock.makefile("rb")
                if not lines.readline().startswith(b"220"):
                    tally.add(refused=1)
                    continue
                sock.sendall(b"EHLO guesser.test\r\n")
                while (line := lines.readline())[3:4] == b"-":
                    pass
                while not stop.is_set():
                    n += 1
                    token = base64.b64encode(f"\0{user}\0wrong-{n}".encode()).decode()
                    sock.sendall(f"AUTH PLAIN {token}\r\n".encode())
                    reply = lines.readline()
                    if reply.startswith(b"535"):
                        tally.add(answered=1)
                    elif reply.startswith(b"454"):
                        tally.add(refused=1)
                    else:  # 421 (too many errors): reconnect
                        break
        except OSError:
            if not stop.is_set():
                time.sleep(0.05)


def _pop3_guesser(address, source, user, stop: threading.Event, tally: GuessTally) -> None:
    n = 0
    while not stop.is_set():
        try:
            with connect_from(source, address, timeout=60) as sock:
                lines = sock.makefile("rb")
                if not lines.readline().startswith(b"+OK"):
                    tally.add(refused=1)
                    continue
                while not stop.is_set():
                    n += 1
                    sock.sendall(f"USER {user}\r\nPASS wrong-{n}\r\n".encode())
                    lines.readline()  # +OK send PASS
                    reply = lines.readline()
                    if reply.startswith(b"-ERR [AUTH]"):
                        tally.add(answered=1)
                        if b"too many" in reply:
                            break
                    elif reply.startswith(b"-ERR [SYS/TEMP]"):
                        tally.add(refused=1)
                    else:
                        break
        except OSError:
            if not stop.is_set():
                time.sleep(0.05)


GUESSERS = {"smtp": _smtp_guesser, "pop3": _pop3_guesser}


class Guessers:
    """*connections* threads from *source* guessing *user*'s password on *address* for as long as it runs."""

    def __init__(self, protocol: str, address, source: str, user: str, connections: int = 50) -> None:
        self.tally = GuessTally()
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=GUESSERS[protocol], args=(address, source, user, self.stop_event, self.tally),
                             daemon=True)
            for _ in range(connections)
        ]

    def __enter__(self) -> "Guessers":
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.monotonic() - self.started
        self.stop_event.set()
        # Guessers blocked on a reply are released when the daemon stops (the caller's fixture).
        for thread in self.threads:
            thread.join(0.1)

    def rate(self) -> float:
        return self.tally.answered / (time.monotonic() - self.started)
