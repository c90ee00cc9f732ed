"""A babbling device is contained by ingest's per-device budget, reported, never silently dropped,
and the other devices are not slowed (issue 12)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest

from core.influx import InfluxClient
from core.registry import Device
from core.settings import Settings
from ingest.deadletter import DeadLetterStore, store_path
from ingest.ratelimit import RATE_LIMITED, DeviceBudget, device_of
from ingest.service import Ingestor
from tests.conftest import wait_until


def test_budget_burst_then_rate() -> None:
    b = DeviceBudget(rate=10, burst=5)
    assert [b.allow("A", 100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert b.allow("B", 100.0)  # another device has its own bucket
    assert b.allow("A", 100.11) and not b.allow("A", 100.11)  # 0.11 s at 10/s: one more
    assert b.recent(100.2) == {"A": 3}
    assert b.recent(200.0) == {}


def test_budget_lets_a_backlog_through_by_its_timestamps() -> None:
    """After an outage the broker delivers hours of a device's messages at once: their own
    timestamps are spread out, so they pass; the same number with packed timestamps does not."""
    b = DeviceBudget(rate=1, burst=3)
    t0 = 1_790_000_000_000
    assert all(b.allow("A", 50.0, t0 + i * 10_000) for i in range(500))  # one per 10 s of device time
    packed = [b.allow("F", 50.0, t0 + i) for i in range(500)]  # 500 in half a second of device time
    assert sum(packed) <= 4


def test_device_of() -> None:
    assert device_of("sc/yanhu/gas/G-1/telemetry") == "G-1"
    assert device_of("x/y") is None and device_of("sc/a") is None


@pytest.fixture
def limited_ingestor(settings: Settings, influx: InfluxClient) -> Iterator[Ingestor]:
    ing = Ingestor(replace(settings, ingest_device_rate=20.0, ingest_device_burst=50))
    ing.start()
    assert wait_until(lambda: ing.mqtt_ok, 10)
    time.sleep(0.3)
    yield ing
    ing.close()


def _gas(ing: Ingestor, n: int) -> list[Device]:
    return [d for _, d in sorted(ing.registry.current().items()) if d.kind == "gas"][:n]


def test_flooding_device_contained_reported_and_others_not_slowed(
        settings: Settings, influx: InfluxClient, limited_ingestor: Ingestor, publisher) -> None:  # type: ignore[no-untyped-def]
    flood_dev, good_dev = _gas(limited_ingestor, 2)
    flood_topic = f"sc/{flood_dev.community}/gas/{flood_dev.device_id}/telemetry"
    good_topic = f"sc/{good_dev.community}/gas/{good_dev.device_id}/telemetry"
    now = int(time.time() * 1000)
    n_flood, n_good = 3000, 20

    def flood() -> None:
        for i in range(n_flood):
            publisher.publish(flood_topic, orjson.dumps({"ts": now + i, "m": {"lel_pct": 1.0}}), qos=1)

    t = threading.Thread(target=flood)
    t0 = time.monotonic()
    t.start()
    sent_at = []
    for i in range(n_good):
        publisher.publish(good_topic, orjson.dumps({"ts": now + i * 100, "m": {"lel_pct": 2.0}}), qos=1)
        sent_at.append(time.monotonic())
        time.sleep(0.05)
    t.join()

    def good_stored() -> int:
        rows = influx.rows(f"SELECT count(lel_pct) FROM gas WHERE device_id = '{good_dev.device_id}'")
        return int(rows[0]["count"]) if rows else 0

    assert wait_until(lambda: good_stored() == n_good, 10), good_stored()
    good_done = time.monotonic() - sent_at[-1]
    assert good_done < 5.0, f"the good device waited {good_done:.1f}s behind the flood"

    cut = lambda: limited_ingestor.dead_by_reason[RATE_LIMITED]  # noqa: E731
    rows = lambda: influx.rows(  # noqa: E731
        f"SELECT count(lel_pct) FROM gas WHERE device_id = '{flood_dev.device_id}'")
    assert wait_until(lambda: rows() and int(rows()[0]["count"]) + cut() == n_flood, 30), (rows(), cut())
    stored = int(rows()[0]["count"])
    elapsed = time.monotonic() - t0
    # burst + rate × (wall time + the device's own time span, 3 s of ts here); 3,000 were sent
    assert stored <= 50 + 20 * (elapsed + n_flood / 1000) + 5, (stored, elapsed)
    assert cut() >= n_flood - stored
    store = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max)
    letters = store.list(reason=RATE_LIMITED)
    store.close()
    assert letters and {d["topic"] for d in letters} == {flood_topic}
    assert "budget" in letters[0]["detail"]
    snap = limited_ingestor.snapshot()
    hb = snap["rate_limited_devices"]
    assert flood_dev.device_id in hb and good_dev.device_id not in hb  # type: ignore[operator]
    from ingest.metrics import render_prometheus

    text = render_prometheus([snap | {"name": "ingest-0"}])
    assert 'sc_ingest_rate_limited_devices{worker="ingest-0"} 1.0' in text
    assert any(ln.startswith("sc_ingest_deadlettered_by_reason_total") and f'reason="{RATE_LIMITED}"' in ln
               and float(ln.rsplit(" ", 1)[1]) > 0 for ln in text.splitlines())
