"""The aiosmtpd peer of bench/smtp_accept.py: accept mail, write it to a Maildir
with fsync (tmp/ -> fsync -> new/ -> fsync dir) before answering 250.

    python bench/smtp_aiosmtpd_peer.py PORT MAILDIR
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP

_counter = 0


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.new_fd = os.open(maildir / "new", os.O_RDONLY | os.O_DIRECTORY)

    async def handle_DATA(self, server, session, envelope):
        global _counter
        _counter += 1
        name = f"{time.time():.6f}.P{os.getpid()}Q{_counter}.bench"
        tmp = self.maildir / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, envelope.original_content)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, self.maildir / "new" / name)
        os.fsync(self.new_fd)
        return "250 2.0.0 OK"


async def main(port: int, maildir: Path) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="aiosmtpd.bench.test"), "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
