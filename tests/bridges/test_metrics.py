"""The bridges' counters reach the dashboard's /metrics through their heartbeats."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from dashboard.metrics import render_metrics
from tests.bridges.test_onenet import now_ms, plain_body, point
from tests.conftest import wait_until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_onenet_counters_on_metrics(run_bridge: Any, mapping: Any, settings: Settings) -> None:
    r = run_bridge(mapping)
    assert r.post(plain_body([point("CH4", 1, now_ms())], token="forged")).status_code == 403
    assert r.post(plain_body([point("humidity", 1, now_ms())])).status_code == 200  # unknown_metric
    w = ("worker", "bridge-onenet")

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        got = samples(render_metrics(settings.data_path))
        return got if got.get(("sc_bridge_refused_signature_total", (w,))) == 1.0 else None

    got = wait_until(scraped, 10)
    assert got, "the forged push never showed on /metrics"
    assert got[("sc_bridge_deadlettered_by_reason_total", (("reason", "unknown_metric"), w))] == 1.0
    assert got[("sc_bridge_mqtt_up", (w,))] == 1.0
    assert got[("sc_worker_up", (("part", "bridge"), w))] == 1.0
