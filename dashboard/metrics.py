"""GET /metrics: the workers' heartbeats in Prometheus text format (version 0.0.4).

The collector is `core.prometheus.HeartbeatCollector`; each part owns its names
(`ingest.metrics`, `alerts.metrics`, `bridges.metrics`). One series per worker (label `worker`); sum in PromQL.
"""

from __future__ import annotations

from pathlib import Path

from alerts.metrics import add_alerts
from bridges.metrics import add_bridges
from core.prometheus import CONTENT_TYPE, HeartbeatCollector, render
from ingest.metrics import add_ingest

__all__ = ["CONTENT_TYPE", "render_metrics"]


def render_metrics(data_path: Path) -> str:
    return render(HeartbeatCollector(data_path, {"ingest": add_ingest, "alerts": add_alerts, "bridge": add_bridges}))
