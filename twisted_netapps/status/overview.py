"""The overview document: every service, its listeners, up time, counters, rates.

Pure functions over snapshots (no Twisted): the page, ``/api/overview`` and
``netapps status`` all show this one document.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted_netapps import __version__, registry


def counter_docs(service: str) -> dict[str, str]:
    """The service module's ``COUNTERS`` (name -> meaning), if it declares them."""
    path = registry.SERVICES.get(service)
    if path is None:
        return {}
    module = importlib.import_module(path)
    return dict(getattr(module, "COUNTERS", {}))


class RateTracker:
    """Per-second rates of every counter between two snapshots."""

    def __init__(self) -> None:
        self._previous: dict[str, dict[str, int]] = {}
        self._at: float | None = None
        self.rates: dict[str, dict[str, float]] = {}

    def update(self, snapshot: dict[str, dict[str, int]], now: float) -> None:
        if self._at is not None and now > self._at:
            elapsed = now - self._at
            self.rates = {
                service: {
                    name: round((value - self._previous.get(service, {}).get(name, 0)) / elapsed, 2)
                    for name, value in counters.items()
                    if name != "active_connections"
                }
                for service, counters in snapshot.items()
            }
        self._previous = {service: dict(counters) for service, counters in snapshot.items()}
        self._at = now


def overview(*, pid: int, started: float, now: float, enabled: list[str], bound: list,
             snapshot: dict[str, dict[str, int]], rates: dict[str, dict[str, float]],
             views: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    services = []
    for name in enabled:
        counters = snapshot.get(name, {})
        services.append({
            "name": name,
            "listeners": [
                f"{b.transport} {b.host}:{b.port}" if b.port is not None else f"{b.transport} {b.host}"
                for b in bound if b.service == name
            ],
            "counters": counters,
            "rates": rates.get(name, {}),
            "errors": counters.get("errors", 0),
            "active_connections": counters.get("active_connections", 0),
            "views": [{"name": v, "title": t, "params": list(p)} for v, t, p in views.get(name, [])],
        })
    return {
        "version": __version__,
        "pid": pid,
        "started": started,
        "uptime": round(now - started, 1),
        "now": now,
        "services": services,
    }
