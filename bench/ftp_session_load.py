"""Load client for bench/ftp_transfer.py: many short FTP sessions at once, asyncio, one process.

    python bench/ftp_session_load.py HOST PORT SECONDS CONCURRENCY PATH

Each session: connect, USER anonymous / PASS, TYPE I, PASV + LIST, PASV +
RETR PATH, QUIT; sessions are started back to back by CONCURRENCY workers
for SECONDS. Prints one JSON line: sessions completed, errors, seconds.
Raw protocol (no ftplib), so the client stays cheap next to the servers.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

_PASV = re.compile(rb"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)")


async def reply(reader) -> bytes:
    line = await reader.readline()
    if len(line) < 4:
        raise ConnectionError(f"bad reply {line!r}")
    if line[3:4] == b"-":
        end = line[:3] + b" "
        while True:
            more = await reader.readline()
            if not more:
                raise ConnectionError("closed in a multi-line reply")
            if more.startswith(end):
                break
    return line


async def command(reader, writer, text: bytes, expect: bytes) -> bytes:
    writer.write(text + b"\r\n")
    line = await reply(reader)
    if not line.startswith(expect):
        raise ConnectionError(f"{text!r}: {line!r}")
    return line


async def transfer(reader, writer, text: bytes) -> int:
    line = await command(reader, writer, b"PASV", b"227")
    numbers = [int(n) for n in _PASV.search(line).groups()]
    data_reader, data_writer = await asyncio.open_connection(".".join(map(str, numbers[:4])), numbers[4] * 256 + numbers[5])
    writer.write(text + b"\r\n")
    first = await reply(reader)
    if not first.startswith((b"125", b"150")):
        raise ConnectionError(f"{text!r}: {first!r}")
    size = 0
    while chunk := await data_reader.read(65536):
        size += len(chunk)
    data_writer.close()
    if not (await reply(reader)).startswith(b"226"):
        raise ConnectionError(f"{text!r}: no 226")
    return size


async def session(host: str, port: int, path: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if not (await reply(reader)).startswith(b"220"):
            raise ConnectionError("no greeting")
        line = await command(reader, writer, b"USER anonymous", b"")
        if line.startswith(b"331"):  # (vsftpd with no_anon_password answers 230 at once)
            await command(reader, writer, b"PASS bench@example.test", b"230")
        elif not line.startswith(b"230"):
            raise ConnectionError(f"USER: {line!r}")
        await command(reader, writer, b"TYPE I", b"200")
        await transfer(reader, writer, b"LIST")
        await transfer(reader, writer, b"RETR " + path)
        await command(reader, writer, b"QUIT", b"221")
    finally:
        writer.close()


async def main(host: str, port: int, seconds: float, concurrency: int, path: bytes) -> dict:
    deadline = time.monotonic() + seconds
    counts = {"sessions": 0, "errors": 0}

    async def worker():
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(session(host, port, path), 30)
                counts["sessions"] += 1
            except (OSError, ConnectionError, asyncio.TimeoutError, AttributeError):
                counts["errors"] += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    counts["seconds"] = time.monotonic() - start
    return counts


if __name__ == "__main__":
    host, port, seconds, concurrency, path = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(host, int(port), float(seconds), int(concurrency), path.encode()))))
