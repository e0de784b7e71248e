"""Per-service counters, read the same way for every service.

Every service gets one :class:`ServiceStats` from the daemon's
:class:`StatsRegistry`. The standard counters (connections, requests, errors,
bytes in/out) always exist; a service adds its own (``cache_hits``,
``messages_delivered``...) simply by incrementing them. A later metrics endpoint
or dashboard reads :meth:`StatsRegistry.snapshot` and needs to know nothing
about the services.
"""

from __future__ import annotations

from zope.interface import Interface, implementer

# The counters every service has, with their meaning. A service documents its
# own counters (and what the standard ones count for it) in a module-level
# ``COUNTERS: dict[str, str]`` in its ``service.py``; ``netapps stats
# --explain`` prints both. Counters start at 0 when the daemon starts.
STANDARD_COUNTERS: dict[str, str] = {
    "connections": "TCP connections accepted",
    "requests": "requests answered (lines, queries, commands: see the service)",
    "errors": "requests answered with an error, or that could not be answered",
    "bytes_in": "bytes received from clients",
    "bytes_out": "bytes sent to clients",
}
# Counted by the frame for every service with TCP listeners (twisted_netapps.connections).
FRAME_COUNTERS: dict[str, str] = {
    "refused_connections": "TCP connections refused over max_connections or max_connections_per_address",
    "evicted_connections": "TCP connections closed to admit an address holding fewer while the listener was full",
}
GAUGES: dict[str, str] = {
    "active_connections": "TCP connections open now (a gauge, not a counter)",
}


class IServiceStats(Interface):
    """What every service exposes about itself."""

    def snapshot() -> dict[str, int]:
        """Current values of all counters and gauges, by name."""


@implementer(IServiceStats)
class ServiceStats:
    """Monotonic counters plus gauges (values that go up and down, e.g. open connections)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._counters: dict[str, int] = dict.fromkeys(STANDARD_COUNTERS, 0)
        self._gauges: dict[str, int] = dict.fromkeys(GAUGES, 0)

    def incr(self, name: str, amount: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + amount

    def gauge_add(self, name: str, amount: int) -> None:
        self._gauges[name] = self._gauges.get(name, 0) + amount

    def connection_opened(self) -> None:
        self.incr("connections")
        self.gauge_add("active_connections", 1)

    def connection_closed(self) -> None:
        self.gauge_add("active_connections", -1)

    def __getitem__(self, name: str) -> int:
        if name in self._gauges:
            return self._gauges[name]
        return self._counters.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        return {**self._counters, **self._gauges}


class StatsRegistry:
    """All services' stats, by service name."""

    def __init__(self) -> None:
        self._services: dict[str, ServiceStats] = {}

    def for_service(self, name: str) -> ServiceStats:
        if name not in self._services:
            self._services[name] = ServiceStats(name)
        return self._services[name]

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: stats.snapshot() for name, stats in self._services.items()}
