"""Prometheus exposition with `prometheus_client`: a custom collector over the heartbeats.

The parts do not keep live metric objects across processes; each long-running worker writes a
heartbeat file (`core.heartbeat`) and whoever serves `/metrics` turns those files into metric
families at scrape time. `HeartbeatCollector` does that: it owns the per-worker series every
part shares (`sc_worker_up`, `sc_worker_heartbeat_timestamp_seconds`) and hands each part's
heartbeats to the part's own function (`ingest.metrics.add_ingest`, `alerts.metrics.add_alerts`),
which owns that part's metric names. Text format 0.0.4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core import heartbeat

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

Snapshots = Iterable[Mapping[str, Any]]
PartMetrics = Callable[["Families", Snapshots], None]


def number(v: Any) -> float | None:
    """A sample value, or None for anything that is not a finite number (or bool)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


class Families:
    """Metric families built sample by sample: one HELP/TYPE per family however many series.

    `add(name, "counter" | "gauge", help, labels, value)`: the first sample of a family fixes
    its type, help and label names.
    """

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, name: str, mtype: str, help_: str, labels: Mapping[str, Any], value: float) -> None:
        fam = self._families.get(name)
        if fam is None:
            cls = CounterMetricFamily if mtype == "counter" else GaugeMetricFamily
            fam = self._families[name] = cls(name, help_, labels=list(labels))
        fam.add_metric([str(v) for v in labels.values()], value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


class HeartbeatCollector(Collector):
    """Collects, at each scrape, the heartbeats of `parts` (heartbeat name prefix -> the part's metrics)."""

    def __init__(self, data_path: Path, parts: Mapping[str, PartMetrics]) -> None:
        self.data_path = data_path
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        out = Families()
        beats = {part: heartbeat.read_all(self.data_path, part) for part in self.parts}
        for part, hbs in beats.items():
            for hb in hbs:
                worker = {"worker": hb.get("name", part), "part": part}
                up = 1.0 if hb.get("fresh") and not hb.get("stopped") else 0.0
                out.add("sc_worker_up", "gauge", "1 when the worker's heartbeat is fresh", worker, up)
                at = number(hb.get("at"))
                if at is not None:
                    out.add("sc_worker_heartbeat_timestamp_seconds", "gauge", "time of the last heartbeat", worker, at)
        for part, add_part in self.parts.items():
            add_part(out, beats[part])
        yield from out


class _Once(Collector):
    def __init__(self, families: Families) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(collector: Collector | Families) -> str:
    """The text exposition (format 0.0.4) of one collector or of families built by hand."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once(collector) if isinstance(collector, Families) else collector)
    return generate_latest(registry).decode()
