"""alerts/metrics.py: the engine's own heartbeat, as a running service writes it, on /metrics."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from alerts.metrics import add_alerts
from alerts.service import AlertService
from core import heartbeat
from core.prometheus import HeartbeatCollector, render
from core.registry import system_registry
from core.settings import Settings
from core.validation import Telemetry
from ingest.forward import encode, records_topic


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_alert_engine_series_from_its_heartbeat(settings: Settings) -> None:
    svc = AlertService(settings)
    try:
        dev = sorted((d for d in system_registry(settings).values() if d.kind == "gas"), key=lambda d: d.device_id)[0]
        topic = records_topic(dev.community)  # what ingest hands on: records it accepted
        svc.inbox.put((topic, encode([Telemetry(dev, int(time.time() * 1000), None, {"lel_pct": 31.0}),
                                      Telemetry(dev, int(time.time() * 1000) + 1, None, {"lel_pct": 32.0})])))
        svc.inbox.put((topic, b"{not json"))
        deadline = time.monotonic() + 30
        while svc.counters["bad_batches"] < 1 and time.monotonic() < deadline:
            svc.step(0.2)  # the first red alert loads the map layers (who is nearby): slow once
        heartbeat.write(settings.data_path, "alerts", svc.snapshot())
        got = samples(render(HeartbeatCollector(settings.data_path, {"alerts": add_alerts})))
    finally:
        svc.store.close()
    w = (("worker", "alerts"),)
    assert got[("sc_alerts_received_total", w)] == 2
    assert got[("sc_alerts_batches_total", w)] == 1 and got[("sc_alerts_bad_batches_total", w)] == 1
    assert got[("sc_alerts_open_alerts", w)] == len(svc.engine.open) == 1  # the red gas alert
    assert got[("sc_alerts_queue", w)] == 0
    assert got[("sc_worker_up", (("part", "alerts"), ("worker", "alerts")))] == 1
