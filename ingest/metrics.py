"""Ingest's Prometheus metrics (it owns every `sc_ingest_*` name): `add_ingest(families, snapshots)`.

`snapshots` are heartbeat documents as `core.heartbeat.read_all(data_dir, "ingest")`
returns them (each with `name`). One series per worker (label `worker`); sum in PromQL.
`core.prometheus.HeartbeatCollector` calls `add_ingest` at each scrape of `/metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.prometheus import Families, number, render

_COUNTERS = {
    "received": "MQTT messages received",
    "stored": "points written straight to InfluxDB",
    "deadlettered": "messages dead-lettered (all reasons)",
    "spooled": "points spooled to disk while InfluxDB was down",
    "replayed": "spooled points written back to InfluxDB",
    "influx_refused": "points InfluxDB refused (dead-lettered)",
    "acks_skipped_reconnect": "acks not sent because the broker connection changed (re-delivered)",
}
_GAUGES = {
    "lag_ms": ("sc_ingest_lag_seconds", "now minus the oldest payload ts of the last stored batch", 1e-3),
    "lag_avg_ms": ("sc_ingest_lag_avg_seconds", "now minus the mean payload ts of the last stored batch", 1e-3),
    "spool_bytes": ("sc_ingest_spool_bytes", "spooled bytes not yet replayed", 1.0),
    "spool_disk_bytes": ("sc_ingest_spool_disk_bytes", "bytes of spool segment files on disk", 1.0),
    "queued_batches": ("sc_ingest_queued_batches", "batches waiting for a writer", 1.0),
    "registry_devices": ("sc_ingest_registry_devices", "devices in the registry", 1.0),
    "deadletter_dropped": ("sc_ingest_deadletter_dropped_total", "dead letters dropped past SC_DEADLETTER_MAX", 1.0),
}


def add_ingest(out: Families, snapshots: Iterable[Mapping[str, Any]]) -> None:
    """Add the ingest workers' series to `out`."""
    add = out.add
    for snap in snapshots:
        w = {"worker": snap.get("name", "ingest")}
        add("sc_ingest_up", "gauge", "1 when the worker's heartbeat is fresh and it has not stopped", w,
            1.0 if snap.get("fresh", True) and not snap.get("stopped") else 0.0)
        add("sc_ingest_acking", "gauge", "0 while ingest holds messages unacknowledged (disk full)", w,
            1.0 if snap.get("acking", True) else 0.0)
        for state in ("ok", "spooling", "replaying", "holding"):
            add("sc_ingest_state", "gauge", "current state (1 for the one in force)", w | {"state": state},
                1.0 if snap.get("state") == state else 0.0)
        counters = snap.get("counters") or {}
        for key in sorted(set(_COUNTERS) | set(counters)):
            v = number(counters.get(key, 0))
            if v is not None:
                add(f"sc_ingest_{key}_total", "counter", _COUNTERS.get(key, f"ingest counter {key}"), w, v)
        for reason, raw in sorted((snap.get("deadlettered_by_reason") or {}).items()):
            v = number(raw)
            if v is not None:
                add("sc_ingest_deadlettered_by_reason_total", "counter", "messages dead-lettered, by reason",
                    w | {"reason": reason}, v)
        for key, (name, help_, scale) in _GAUGES.items():
            v = number(snap.get(key))
            if v is not None:
                add(name, "counter" if name.endswith("_total") else "gauge", help_, w, v * scale)


def render_prometheus(snapshots: Iterable[Mapping[str, Any]]) -> str:
    """The ingest series alone, as text (format 0.0.4)."""
    out = Families()
    add_ingest(out, snapshots)
    return render(out)
