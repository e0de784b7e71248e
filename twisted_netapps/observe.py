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
  returns JSON-able data (a list of flat dicts renders as a table) or a
  Deferred of it, and may take keyword arguments from the page's query.

Nothing here blocks or grows without bound: a slow reader of the live
stream loses events (and is told how many), it never holds the services up.
No Twisted imports.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

MAX_RECENT = 200


#: Events kept per service per second: the page cannot show 20,000 DNS queries
#: a second, and recording them all would cost the service more than the 3%
#: the status page may take. The counters still count everything.
MAX_PER_SECOND = 100


class Recent:
    """The last *maxlen* events of one service, each a dict with ``t`` (epoch
    seconds), ``service``, ``kind`` and the service's fields; at most
    *per_second* a second are kept (the rest are counted in ``skipped``)."""

    __slots__ = ("service", "events", "_subscribers", "clock", "per_second", "skipped", "_second", "_count")

    def __init__(self, service: str, maxlen: int = MAX_RECENT, clock: Callable[[], float] = time.time,
                 per_second: int = MAX_PER_SECOND) -> None:
        self.service = service
        self.events: deque[dict] = deque(maxlen=maxlen)
        self._subscribers: list[Callable[[dict], None]] = []
        self.clock = clock
        self.per_second = per_second
        self.skipped = 0
        self._second = 0
        self._count = 0

    def record(self, kind: str, /, **fields: Any) -> None:
        """Keep an event (unless this second's share is used up)."""
        if self.wants():
            self.add(kind, **fields)

    def wants(self) -> bool:
        """Whether an event now would be kept; counts it. For hot paths that build
        their fields only when wanted: ``if recent.wants(): recent.add(...)``."""
        second = int(self.clock())
        if second != self._second:
            self._second, self._count = second, 0
        self._count += 1
        if self._count > self.per_second:
            self.skipped += 1
            return False
        return True

    def add(self, kind: str, /, **fields: Any) -> None:
        """Keep an event without the per-second check (after :meth:`wants` said yes)."""
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

    def record(self, kind: str, /, **fields: Any) -> None:
        pass

    def wants(self) -> bool:
        return False

    def add(self, kind: str, /, **fields: Any) -> None:
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
        self._views: dict[str, tuple[str, Callable[..., Any], tuple[str, ...]]] = {}

    def add(self, name: str, title: str, function: Callable[..., Any], params: tuple[str, ...] = ()) -> None:
        """Add view *name*; *params* names the keyword arguments the page asks the user for."""
        self._views[name] = (title, function, params)

    def names(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(name, title, params) for name, (title, _f, params) in self._views.items()]

    def render(self, view: str, /, **params: str) -> Any:
        """The view's current data (or a Deferred of it); KeyError for an unknown view.

        *params* are the page's query arguments (strings), for views that take
        some (the resolver's trace of a typed name); a view that takes none
        ignores them."""
        function = self._views[view][1]
        return function(**params) if params else function()


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
