"""/metrics keeps its names, labels, values, HELP and TYPE across the move to prometheus_client.

`data/metrics_expected.prom` and `data/metrics_expected_ingest.prom` are the output of the
hand-written exposition (commit a3b2122, `dashboard.metrics.render_metrics` and
`ingest.metrics.render_prometheus`) for the heartbeat files of `data/metrics_scenario.json`;
they were captured from that code, not written by hand. A heartbeat `at` of 4e9 (year 2096) is
always fresh and 1.7e9 always stale, so the output does not depend on the clock.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import heartbeat
from dashboard.app import create_app
from ingest.metrics import render_prometheus
from tests.conftest import make_settings

DATA = Path(__file__).parent / "data"
# Families added since the capture, tested where they are made: SC_DATA_DIR's folder sizes
# (core/datasize.py, tests/dashboard/test_data_sizes.py), present once the first scan is done.
ADDED = ("sc_data_dir_",)
Sample = tuple[str, tuple[tuple[str, str], ...], float]


def parse(text: str) -> tuple[set[tuple[str, str, str]], list[Sample]]:
    """(family name, type, help) of each family, and every sample as (name, sorted labels, value)."""
    families, samples = set(), []
    for fam in text_string_to_metric_families(text):
        families.add((fam.name, fam.type, fam.documentation))
        samples += [(s.name, tuple(sorted(s.labels.items())), s.value) for s in fam.samples]
    assert not any(math.isnan(v) for _, _, v in samples)
    return families, sorted(samples)


def sample_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def write_scenario(data_path: Path) -> None:
    run = heartbeat.run_dir(data_path)
    run.mkdir(parents=True)
    for name, doc in json.loads((DATA / "metrics_scenario.json").read_text()).items():
        if not name.startswith("_"):
            (run / f"{name}.json").write_text(json.dumps(doc))


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    data_path = tmp_path / "var"
    write_scenario(data_path)
    return data_path


def test_metrics_endpoint_unchanged(scenario: Path) -> None:
    s = make_settings(scenario, mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(s)
    try:
        r = app.server.test_client().get("/metrics")
    finally:
        app.server.config["SC_DASHBOARD"].close()
    assert r.status_code == 200 and r.content_type == "text/plain; version=0.0.4; charset=utf-8"
    want_text = (DATA / "metrics_expected.prom").read_text()
    want_families, want = parse(want_text)
    got_families, got = parse(r.data.decode())
    got_families = {f for f in got_families if not f[0].startswith(ADDED)}
    got = [x for x in got if not x[0].startswith(ADDED)]
    assert len(want) == sample_lines(want_text) > 90  # the parser kept every expected line
    assert got == want
    assert got_families == want_families
    # the worker whose name needs escaping kept its name
    assert ("sc_ingest_up", (("worker", 'ingest-q"b\\s'),), 1.0) in got


def test_ingest_render_unchanged(scenario: Path) -> None:
    want_text = (DATA / "metrics_expected_ingest.prom").read_text()
    want_families, want = parse(want_text)
    got_families, got = parse(render_prometheus(heartbeat.read_all(scenario, "ingest")))
    assert len(want) == sample_lines(want_text) > 60
    assert got == want
    assert got_families == want_families


def test_the_comparison_sees_a_changed_value(scenario: Path) -> None:
    """The comparison is not blind: one counter changed in one heartbeat changes the result."""
    doc = json.loads((heartbeat.run_dir(scenario) / "ingest-0.json").read_text())
    doc["counters"]["stored"] += 1
    (heartbeat.run_dir(scenario) / "ingest-0.json").write_text(json.dumps(doc))
    _, want = parse((DATA / "metrics_expected_ingest.prom").read_text())
    _, got = parse(render_prometheus(heartbeat.read_all(scenario, "ingest")))
    assert set(want) - set(got) == {("sc_ingest_stored_total", (("worker", "ingest-0"),), 990.0)}
