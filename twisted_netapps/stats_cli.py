"""``netapps stats``: print every service's counters from a running (or stopped) daemon."""

from __future__ import annotations

import json
from pathlib import Path

from twisted_netapps.errors import NetappsError


def register(subparsers) -> None:
    p = subparsers.add_parser("stats", help="show every service's counters (DATA_DIR/run/stats.json)")
    p.add_argument("--data-dir", default="./netapps-data", help="the daemon's data directory")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    path = Path(args.data_dir) / "run" / "stats.json"
    try:
        stats = json.loads(path.read_text())
    except FileNotFoundError:
        raise NetappsError(f"{path}: no stats yet (is the daemon running with --data-dir={args.data_dir}?)") from None
    except ValueError as e:
        raise NetappsError(f"{path}: unreadable: {e}") from None
    if args.json:
        print(json.dumps(stats, indent=1, sort_keys=True))
        return 0
    for service in sorted(stats):
        counters = "  ".join(f"{k}={v}" for k, v in sorted(stats[service].items()))
        print(f"{service}: {counters}")
    return 0
