"""GET /metrics: the workers' heartbeats in Prometheus text format (version 0.0.4).

The collector is `core.prometheus.HeartbeatCollector`; each part owns its names
(`ingest.metrics`, `alerts.metrics`, `bridges.metrics`). One series per worker (label `worker`); sum in PromQL.
"""

from __future__ import annotations

from pathlib import Path

from alerts.metrics import add_alerts
from bridges.metrics import add_bridges
from core.datasize import Scan
from core.prometheus import CONTENT_TYPE, Families, HeartbeatCollector, render
from ingest.metrics import add_ingest

__all__ = ["CONTENT_TYPE", "render_metrics"]


def render_metrics(data_path: Path, scan: Scan | None = None) -> str:
    """The heartbeats' metrics, and with the last `scan` of SC_DATA_DIR the size of each part's folder."""
    text = render(HeartbeatCollector(data_path, {"ingest": add_ingest, "alerts": add_alerts, "bridge": add_bridges}))
    if scan is None or scan.at is None:
        return text
    fam = Families()
    for folder, size in sorted(scan.folders.items()):
        fam.add("sc_data_dir_bytes", "gauge", "bytes on disk under SC_DATA_DIR/<folder> (periodic scan)",
                {"folder": folder}, float(size))
    fam.add("sc_data_dir_disk_bytes", "gauge", "size of the disk SC_DATA_DIR is on", {}, float(scan.disk_bytes))
    fam.add("sc_data_dir_scan_timestamp_seconds", "gauge", "when SC_DATA_DIR was last measured", {}, scan.at)
    return text + render(fam)
