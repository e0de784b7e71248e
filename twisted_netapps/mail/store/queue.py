"""The durable outgoing-mail queue on disk (storage layer: blocking, no Twisted).

``<data_dir>/smtp-queue/`` holds, per queued message ``<id>``:

- ``<id>.eml``  the message as it will be sent (CRLF lines, our ``Received:`` on top);
- ``<id>.json`` its envelope and delivery state (:class:`QueueEntry`).

A new entry writes and fsyncs the message first, then the envelope (temp
file, fsync, rename); the directory is fsynced by the caller's group commit
before the SMTP 250. The envelope's existence is what makes the entry real:
a crash before it leaves an orphan ``.eml`` that :meth:`QueueStore.entries`
sweeps. Updates replace the envelope atomically; removal deletes the
envelope first. A ``flush`` file in the directory asks the running daemon to
retry everything now (``netapps mail flush``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from twisted_netapps.fileio import ensure_private_dir, fsync_directory, write_atomically, write_file

FLUSH_REQUEST = "flush"
ORPHAN_AGE = 3600.0


@dataclass
class Recipient:
    address: str
    attempts: int = 0
    last_error: str = ""


@dataclass
class QueueEntry:
    id: str
    sender: str  # "" is the null reverse-path (a bounce: never bounced again)
    recipients: list[Recipient]
    created: float
    next_attempt: float
    attempts: int = 0
    last_error: str = ""
    size: int = 0
    failed: list[Recipient] = field(default_factory=list)  # permanent failures not yet bounced

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "QueueEntry":
        raw = json.loads(data)
        raw["recipients"] = [Recipient(**r) for r in raw["recipients"]]
        raw["failed"] = [Recipient(**r) for r in raw.get("failed", [])]
        return cls(**raw)


class QueueStore:
    def __init__(self, root: Path) -> None:
        self.root = ensure_private_dir(Path(root))

    def _paths(self, entry_id: str) -> tuple[Path, Path]:
        if not entry_id.isalnum():
            raise ValueError(f"bad queue id {entry_id!r}")
        return self.root / f"{entry_id}.eml", self.root / f"{entry_id}.json"

    def add(self, entry: QueueEntry, message: bytes, dirs: set | None = None) -> QueueEntry:
        """Write a new entry durably; the directory fsync is left to *dirs* (group commit)
        or done here when *dirs* is None."""
        message_path, envelope_path = self._paths(entry.id)
        write_file(message_path, message, exclusive=True)
        entry.size = len(message)
        tmp = envelope_path.with_suffix(".json.tmp")
        write_file(tmp, entry.to_json())
        os.rename(tmp, envelope_path)
        if dirs is None:
            fsync_directory(self.root)
        else:
            dirs.add(self.root)
        return entry

    def update(self, entry: QueueEntry) -> None:
        write_atomically(self._paths(entry.id)[1], entry.to_json(), mode=0o600)

    def remove(self, entry_id: str) -> None:
        message_path, envelope_path = self._paths(entry_id)
        envelope_path.unlink(missing_ok=True)
        message_path.unlink(missing_ok=True)
        fsync_directory(self.root)

    def message(self, entry_id: str) -> bytes:
        return self._paths(entry_id)[0].read_bytes()

    def entries(self) -> list[QueueEntry]:
        """All queued entries, oldest first; sweeps orphaned message files."""
        found = []
        now = time.time()
        for path in self.root.iterdir():
            if path.suffix == ".json":
                try:
                    found.append(QueueEntry.from_json(path.read_bytes()))
                except (ValueError, KeyError, TypeError):
                    continue  # a corrupt envelope stays on disk for a human to inspect
            elif path.suffix == ".eml" and not path.with_suffix(".json").exists():
                try:
                    if now - path.stat().st_mtime > ORPHAN_AGE:
                        path.unlink()
                except FileNotFoundError:
                    pass
        return sorted(found, key=lambda e: e.created)

    def request_flush(self) -> None:
        write_atomically(self.root / FLUSH_REQUEST, b"flush\n", mode=0o600)

    def flush_requested(self) -> bool:
        """A cheap check (one stat) for a pending ``netapps mail flush``."""
        return (self.root / FLUSH_REQUEST).exists()

    def take_flush_request(self) -> bool:
        try:
            (self.root / FLUSH_REQUEST).unlink()
        except FileNotFoundError:
            return False
        return True


def retry_delay(attempts: int, base: float, maximum: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped at *maximum*."""
    return min(maximum, base * (2 ** max(0, attempts - 1)))
