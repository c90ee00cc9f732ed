"""GET /metrics: the workers' heartbeats in Prometheus text format (version 0.0.4).

Ingest's series come from ingest.metrics; the alert engine's are added here. One series per
worker (label `worker`); sum in PromQL.
"""

from __future__ import annotations

from pathlib import Path

from core import heartbeat
from core.prometheus import CONTENT_TYPE, Exposition, number
from ingest.metrics import add_ingest

__all__ = ["CONTENT_TYPE", "render_metrics"]


def render_metrics(data_path: Path) -> str:
    out = Exposition()
    ingest = heartbeat.read_all(data_path, "ingest")
    alerts = heartbeat.read_all(data_path, "alerts")
    for part, beats in (("ingest", ingest), ("alerts", alerts)):
        for hb in beats:
            worker = {"worker": hb.get("name", part), "part": part}
            up = 1.0 if hb.get("fresh") and not hb.get("stopped") else 0.0
            out.add("sc_worker_up", "gauge", "1 when the worker's heartbeat is fresh", worker, up)
            at = number(hb.get("at"))
            if at is not None:
                out.add("sc_worker_heartbeat_timestamp_seconds", "gauge", "time of the last heartbeat", worker, at)
    add_ingest(out, ingest)
    for hb in alerts:
        w = {"worker": hb.get("name", "alerts")}
        for key, raw in sorted((hb.get("counters") or {}).items()):
            v = number(raw)
            if v is not None:
                out.add(f"sc_alerts_{key}_total", "counter", f"alert engine: {key}", w, v)
        for key, help_ in (("open_alerts", "unresolved alerts"), ("queue", "messages waiting for the engine")):
            v = number(hb.get(key))
            if v is not None:
                out.add(f"sc_alerts_{key}", "gauge", help_, w, v)
    return out.text()
