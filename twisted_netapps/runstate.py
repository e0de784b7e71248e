"""What a running daemon leaves in ``DATA_DIR/run/``, and reading it back.

- ``listeners.json``: ``{"pid", "version", "started", "listeners": [...]}``,
  written once every listener is bound and removed at a clean shutdown; each
  listener has its ``name`` (``smtp.submission``), ``service``,
  ``transport``, ``host``, ``port`` and ``description`` (the endpoint string).
- ``stats.json``: every service's counters by service name, plus a
  ``"netapps"`` entry stamping them: ``pid``, ``version``, ``started``,
  ``written`` (Unix times), ``uptime`` (seconds) and ``running`` (false once
  the daemon has stopped; a daemon killed with ``kill -9`` leaves ``running``
  true, which :func:`pid_alive` exposes).

Counters count from the daemon's start: they reset when it restarts.
No Twisted imports here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from twisted_netapps.errors import NetappsError

RUN_DIR = "run"
LISTENERS_FILE = "listeners.json"
STATS_FILE = "stats.json"
DAEMON_KEY = "netapps"  # the stamp's key in stats.json (not a service name)


def pid_alive(pid: object) -> bool:
    """Whether *pid* is a live process that looks like ours (twistd/netapps, where /proc tells)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        command = cmdline.read_bytes()
    except OSError:  # no /proc here: trust kill(0)
        return True
    return b"netapps" in command or b"twistd" in command


def read_json(path: Path) -> dict | None:
    """The JSON object in *path*, None if the file is missing; a one-line error if unreadable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise NetappsError(f"{path}: unreadable: {e}") from None
    if not isinstance(data, dict):
        raise NetappsError(f"{path}: unreadable: not a JSON object")
    return data


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_time(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
