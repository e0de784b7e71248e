"""``netapps stats`` and ``netapps status``: what the daemon left in ``DATA_DIR/run/``.

``status`` says whether the daemon runs (pid, up time, version) and where
each listener listens, from ``listeners.json``; ``stats`` prints every
service's counters from ``stats.json``, saying when they were written,
that they count from the daemon's start, and whether the daemon still runs
(``--explain`` adds what each counter means). See :mod:`twisted_netapps.runstate`.
"""

from __future__ import annotations

import json
import time

from twisted_netapps import datadir, registry
from twisted_netapps.errors import NetappsError
from twisted_netapps.runstate import (
    DAEMON_KEY,
    LISTENERS_FILE,
    RUN_DIR,
    STATS_FILE,
    format_duration,
    format_time,
    pid_alive,
    read_json,
)
from twisted_netapps.stats import FRAME_COUNTERS, GAUGES, STANDARD_COUNTERS

NOT_RUNNING = 3  # LSB's exit status for "program is not running"


def register(subparsers) -> None:
    p = subparsers.add_parser("stats", help="show every service's counters (DATA_DIR/run/stats.json)")
    datadir.add_options(p)
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.add_argument("--explain", action="store_true", help="say what each counter counts")
    p.set_defaults(func=run_stats)
    p = subparsers.add_parser("status", help="is the daemon running: pid, up time, where each service listens")
    datadir.add_options(p)
    p.set_defaults(func=run_status)


def _run_dir(args):
    where = datadir.from_args(args)
    return where, datadir.require_existing(where) / RUN_DIR


def counter_meaning(service: str, name: str) -> str:
    """What counter *name* of *service* counts: the service's ``COUNTERS``, else the standard meaning."""
    try:
        own = getattr(registry.service_module(service), "COUNTERS", {})
    except NetappsError:  # a service this version does not know
        own = {}
    for table in (own, STANDARD_COUNTERS, FRAME_COUNTERS, GAUGES):
        if name in table:
            return table[name]
    return "(not documented)"


def _stamp_line(stamp: dict, now: float) -> str:
    pid = stamp.get("pid")
    version = stamp.get("version", "?")
    started = stamp.get("started")
    written = stamp.get("written")
    since = f"since its start at {format_time(started)}" if isinstance(started, (int, float)) else "since its start"
    when = f"written {format_time(written)}" if isinstance(written, (int, float)) else "written at an unknown time"
    if stamp.get("running") and pid_alive(pid):
        state = f"running (pid {pid}, up {format_duration(now - started)})" if started else f"running (pid {pid})"
    elif stamp.get("running"):
        state = f"NOT RUNNING: pid {pid} is gone (killed or crashed); figures as last written"
    else:
        uptime = stamp.get("uptime")
        ran = f" after {format_duration(uptime)}" if isinstance(uptime, (int, float)) else ""
        state = f"NOT RUNNING: stopped{ran}; figures as of its stop"
    return (f"netapps {version}: {state}; counters {since} ({when}); "
            "they start from 0 at every start")


def run_stats(args) -> int:
    where, run_dir = _run_dir(args)
    path = run_dir / STATS_FILE
    stats = read_json(path)
    if stats is None:
        raise NetappsError(f"no stats in {path}: the daemon has not run with the data directory "
                           f"from {where.origin} ({datadir.HOW_TO_POINT})")
    if args.json:
        print(json.dumps(stats, indent=1, sort_keys=True))
        return 0
    stamp = stats.pop(DAEMON_KEY, None)
    if isinstance(stamp, dict):
        print(_stamp_line(stamp, time.time()))
    else:
        print(f"netapps: {path} has no stamp (written by an older version); the daemon may not be running")
    for service in sorted(stats):
        counters = stats[service]
        if not isinstance(counters, dict):
            continue
        if args.explain:
            print(f"{service}:")
            for name, value in sorted(counters.items()):
                print(f"  {name:<22} {value:>12}  {counter_meaning(service, name)}")
        else:
            print(f"{service}: " + "  ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    return 0


def run_status(args) -> int:
    where, run_dir = _run_dir(args)
    path = run_dir / LISTENERS_FILE
    data = read_json(path)
    if data is None:
        print(f"netapps: not running (no {path}; data directory from {where.origin})")
        return NOT_RUNNING
    pid = data.get("pid")
    if not pid_alive(pid):
        print(f"netapps: not running (pid {pid} in {path} is gone: killed or crashed)")
        return NOT_RUNNING
    started = data.get("started")
    up = f", up {format_duration(time.time() - started)}" if isinstance(started, (int, float)) else ""
    print(f"netapps {data.get('version', '?')}: running (pid {pid}{up}); data in {where.path}")
    for listener in data.get("listeners", []):
        name = listener.get("name") or listener.get("service", "?")
        host, port = listener.get("host", ""), listener.get("port")
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}" if port is not None else host
        print(f"  {name:<18} {listener.get('transport', '?'):<5} {address}")
    overview = _live_overview(data.get("listeners", []))
    if overview is not None:
        print("\nlive, from the status service (rates per second over the last update):")
        _print_overview_table(overview["services"])
    else:
        stats = read_json(run_dir / STATS_FILE) or {}
        stats.pop(DAEMON_KEY, None)
        services = [{"name": n, "counters": c, "rates": {}} for n, c in sorted(stats.items()) if isinstance(c, dict)]
        if services:
            print("\ncounters (DATA_DIR/run/stats.json, written every 5 s; run the status service for rates):")
            _print_overview_table(services)
    return 0


_SHOWN = ("connections", "requests", "errors", "bytes_in", "bytes_out", "active_connections")


def _live_overview(listeners: list) -> dict | None:
    """The status service's /api/overview, when it runs on a loopback listener; else None."""
    import urllib.error
    import urllib.request

    for listener in listeners:
        if listener.get("service") == "status" and listener.get("transport") == "tcp" \
                and str(listener.get("host", "")).startswith("127."):
            url = f"http://{listener['host']}:{listener['port']}/api/overview"
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    return json.loads(response.read())
            except (OSError, ValueError, urllib.error.URLError):
                return None
    return None


def _print_overview_table(services: list[dict]) -> None:
    print(f"  {'service':<11} {'open':>5} {'conns':>8} {'requests':>9} {'req/s':>7} {'errors':>7}  other counters")
    for service in services:
        counters, rates = service.get("counters", {}), service.get("rates", {})
        other = "  ".join(f"{k}={v}" for k, v in sorted(counters.items()) if k not in _SHOWN and v)
        rate = rates.get("requests")
        print(f"  {service['name']:<11} {counters.get('active_connections', 0):>5} {counters.get('connections', 0):>8} "
              f"{counters.get('requests', 0):>9} {'' if rate is None else f'{rate:.1f}':>7} "
              f"{counters.get('errors', 0):>7}  {other}")
