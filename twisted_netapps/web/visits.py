"""The cookie demo's "back-end database": visit counts per cookie id, in one
JSON file under the data directory, written durably. No Twisted.

The seeds' four cookie components are: the ``Set-Cookie`` header of our
response, the ``Cookie`` header of the browser's next requests, the browser's
cookie jar, and this database. Each id maps to its visit count and the times
of its first and last visits. The file is replaced atomically (temp file,
fsync, rename, fsync of the directory) so a count the browser was shown
survives ``kill -9``; a corrupt file is moved aside and the demo starts over
rather than refusing to run. Bounded: beyond *max_ids* the ids seen least
recently are forgotten.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from twisted_netapps.fileio import write_atomically

ID_PATTERN = re.compile(r"[0-9a-f]{16}\Z")


class VisitStore:
    def __init__(self, path: Path, max_ids: int) -> None:
        self.path = Path(path)
        self.max_ids = max_ids
        self.visits: dict[str, dict] = {}
        self.generation = 0  # bumped at each change; a write covers changes up to its generation
        self.load()

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            data = json.loads(raw)
            visits = data["visits"]
            if not isinstance(visits, dict):
                raise ValueError("visits is not an object")
            self.visits = {
                k: {"count": int(v["count"]), "first": float(v["first"]), "last": float(v["last"])}
                for k, v in visits.items() if ID_PATTERN.match(k)
            }
        except (ValueError, KeyError, TypeError):
            os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
            self.visits = {}

    def visit(self, cookie_id: str | None, now: float) -> tuple[str, int, bool]:
        """Count one visit: (id, count, whether the id is new)."""
        record = self.visits.pop(cookie_id, None) if cookie_id else None
        new = record is None
        if new:
            cookie_id = secrets.token_hex(8)
            record = {"count": 0, "first": now, "last": now}
        record["count"] += 1
        record["last"] = now
        self.visits[cookie_id] = record  # re-inserted: dict order is least recently seen first
        while len(self.visits) > self.max_ids:
            del self.visits[next(iter(self.visits))]
        self.generation += 1
        return cookie_id, record["count"], new

    def snapshot(self) -> tuple[int, bytes]:
        return self.generation, json.dumps({"visits": self.visits}, separators=(",", ":")).encode()

    def write(self, data: bytes) -> None:
        """Blocking durable replace of the file (run it in the disk pool)."""
        write_atomically(self.path, data, mode=0o600)
