"""What a service shows about itself beyond its counters: recent events and views.

Each service gets, through its :class:`~twisted_netapps.context.ServiceContext`,

- ``context.recent``: a bounded ring of recent events (a DNS query and its
  answer, a delivery and its ``Received:`` chain, a cache decision and why).
  ``context.recent.record("query", name=..., rcode=...)`` is all a service
  does; the status page shows them live. When no status service runs, the
  ring is :data:`NULL_RECENT` and recording costs one method call.
- ``context.views``: named snapshots computed on demand (the mail queue with
  its retry times, the resolver cache with TTLs, a swarm's piece map):
  ``context.views.add("queue", "Mail queue", function)``; *function*
  returns JSON-able data (a list of flat dicts renders as a table).

Nothing here blocks or grows without bound: a slow reader of the live
stream loses events (and is told how many), it never holds the services up.
No Twisted imports.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

MAX_RECENT = 200


class Recent:
    """The last *maxlen* events of one service, each a dict with ``t`` (epoch
    seconds), ``service``, ``kind`` and the service's fields."""

    __slots__ = ("service", "events", "_subscribers", "clock", "dropped")

    def __init__(self, service: str, maxlen: int = MAX_RECENT, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.events: deque[dict] = deque(maxlen=maxlen)
        self._subscribers: list[Callable[[dict], None]] = []
        self.clock = clock

    def record(self, kind: str, **fields: Any) -> None:
        event = {"t": self.clock(), "service": self.service, "kind": kind, **fields}
        self.events.append(event)
        for subscriber in self._subscribers:
            subscriber(event)

    def snapshot(self) -> list[dict]:
        return list(self.events)

    def subscribe(self, subscriber: Callable[[dict], None]) -> None:
        """*subscriber(event)* is called for each new event; it must not block (queue and return)."""
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Callable[[dict], None]) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)


class _NullRecent:
    """Recording when nobody can look: does nothing."""

    __slots__ = ()
    events: tuple = ()

    def record(self, kind: str, **fields: Any) -> None:
        pass

    def snapshot(self) -> list[dict]:
        return []

    def subscribe(self, subscriber) -> None:
        pass

    def unsubscribe(self, subscriber) -> None:
        pass


NULL_RECENT = _NullRecent()


class Views:
    """A service's named, on-demand snapshots for the status page."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[str, Callable[[], Any]]] = {}

    def add(self, name: str, title: str, function: Callable[[], Any]) -> None:
        self._views[name] = (title, function)

    def names(self) -> list[tuple[str, str]]:
        return [(name, title) for name, (title, _f) in self._views.items()]

    def render(self, name: str) -> Any:
        """The view's current data; KeyError for an unknown view."""
        return self._views[name][1]()


class Observatory:
    """Every service's recent events and views (one per daemon)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.recent: dict[str, Recent] = {}
        self.views: dict[str, Views] = {}

    def for_service(self, name: str) -> tuple[Recent | _NullRecent, Views]:
        views = self.views.setdefault(name, Views())
        if not self.enabled:
            return NULL_RECENT, views
        recent = self.recent.setdefault(name, Recent(name))
        return recent, views
