"""Prometheus text (format 0.0.4) for ingest heartbeats: `render_prometheus(snapshots) -> str`.

`snapshots` are heartbeat documents as `smartcommunity.heartbeat.read_all(data_dir, "ingest")`
returns them (each with `name`). One series per worker (label `worker`); sum in PromQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

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


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def render_prometheus(snapshots: Iterable[Mapping[str, Any]]) -> str:
    fams: dict[str, tuple[str, str, list[str]]] = {}

    def add(name: str, mtype: str, help_: str, labels: dict[str, Any], v: float) -> None:
        lab = ",".join(f'{k}="{_esc(x)}"' for k, x in labels.items())
        fams.setdefault(name, (mtype, help_, []))[2].append(f"{name}{{{lab}}} {_fmt(v)}")

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
            v = _num(counters.get(key, 0))
            if v is not None:
                add(f"sc_ingest_{key}_total", "counter", _COUNTERS.get(key, f"ingest counter {key}"), w, v)
        for reason, raw in sorted((snap.get("deadlettered_by_reason") or {}).items()):
            v = _num(raw)
            if v is not None:
                add("sc_ingest_deadlettered_by_reason_total", "counter", "messages dead-lettered, by reason",
                    w | {"reason": reason}, v)
        for key, (name, help_, scale) in _GAUGES.items():
            v = _num(snap.get(key))
            if v is not None:
                add(name, "counter" if name.endswith("_total") else "gauge", help_, w, v * scale)
    lines: list[str] = []
    for name, (mtype, help_, samples) in fams.items():
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {mtype}", *samples]
    return "\n".join(lines) + "\n" if lines else ""
