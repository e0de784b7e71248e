"""``/metrics``: every service's counters in the Prometheus text format.

A counter ``requests`` of service ``dns`` becomes ``netapps_dns_requests_total``;
a counter named ``family{label=value}`` (how a service counts by kind, e.g.
``queries{rcode=NOERROR}``) becomes ``netapps_dns_family_total{label="value"}``;
``active_connections`` and other gauges stay gauges. The counters reset when
the daemon restarts, which Prometheus' ``rate()`` handles.
"""

from __future__ import annotations

import re

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

GAUGES = frozenset({"active_connections"})
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\{(.*)\})?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _parse(key: str) -> tuple[str, dict[str, str]] | None:
    match = _KEY.match(key)
    if match is None:
        return None
    labels = {}
    if match.group(2):
        for pair in match.group(2).split(","):
            name, _, value = pair.partition("=")
            labels[_UNSAFE.sub("_", name.strip())] = value.strip().strip('"')
    return match.group(1), labels


class StatsCollector:
    """A prometheus_client collector reading the daemon's stats at scrape time."""

    def __init__(self, snapshot, docs) -> None:
        self.snapshot = snapshot  # () -> {service: {key: value}}
        self.docs = docs  # service -> {counter: meaning}

    def collect(self):
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for service, counters in sorted(self.snapshot().items()):
            docs = self.docs(service)
            for key, value in sorted(counters.items()):
                parsed = _parse(key)
                if parsed is None:
                    continue
                name, labels = parsed
                metric = f"netapps_{_UNSAFE.sub('_', service)}_{name}"
                family = families.get(metric)
                if family is None:
                    doc = docs.get(key) or docs.get(name) or f"{service} {name}"
                    label_names = sorted(labels)
                    family = (GaugeMetricFamily if name in GAUGES else CounterMetricFamily)(
                        metric, doc, labels=label_names
                    )
                    families[metric] = family
                family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


def render(snapshot, docs) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(snapshot, docs))
    return generate_latest(registry)
