"""The alert engine's Prometheus metrics (it owns every `sc_alerts_*` name): `add_alerts(families, snapshots)`.

`snapshots` are the engine's heartbeat documents (`core.heartbeat.read_all(data_dir, "alerts")`,
written by `alerts.service`). One series per worker (label `worker`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.prometheus import Families, number

_GAUGES = {"open_alerts": "unresolved alerts", "queue": "messages waiting for the engine"}
# Per notification target (alerts/delivery.py TargetWorker.snapshot): labels worker, target, kind.
_NOTIFY_COUNTERS = {"delivered": "notifications delivered", "failed_attempts": "delivery attempts that failed",
                    "given_up": "notifications given up", "digests": "digest messages sent past a rate limit"}


def add_alerts(out: Families, snapshots: Iterable[Mapping[str, Any]]) -> None:
    """Add the alert engine's series to `out`."""
    for hb in snapshots:
        w = {"worker": hb.get("name", "alerts")}
        for key, raw in sorted((hb.get("counters") or {}).items()):
            v = number(raw)
            if v is not None:
                out.add(f"sc_alerts_{key}_total", "counter", f"alert engine: {key}", w, v)
        for key, help_ in _GAUGES.items():
            v = number(hb.get(key))
            if v is not None:
                out.add(f"sc_alerts_{key}", "gauge", help_, w, v)
        for target, snap in sorted((hb.get("notify") or {}).items()):
            labels = {**w, "target": target, "kind": snap.get("kind", "")}
            for key, help_ in _NOTIFY_COUNTERS.items():
                v = number(snap.get(key))
                if v is not None:
                    out.add(f"sc_alerts_notify_{key}_total", "counter", help_, labels, v)
            v = number(snap.get("pending"))
            if v is not None:
                out.add("sc_alerts_notify_pending", "gauge", "notifications waiting for delivery", labels, v)
        store = hb.get("store")
        if isinstance(store, Mapping):  # writes the full data disk could not take, kept in memory
            out.add("sc_alerts_store_held", "gauge", "alert store writes held in memory (data disk full)", w,
                    float(number(store.get("holding")) or 0))
        if "outbox_held" in hb:
            out.add("sc_alerts_outbox_held", "gauge", "notifications held in memory (data disk full)", w,
                    float(number(hb.get("outbox_held")) or 0))
        if "config_errors" in hb:
            out.add("sc_alerts_config_errors", "gauge", "roster/channels files refused (running ones kept)", w,
                    float(len(hb.get("config_errors") or [])))
