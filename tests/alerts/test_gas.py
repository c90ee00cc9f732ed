"""gas_lel_high end to end: raised once, updated, resolved after the hold-off, kept across a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from alerts.service import AlertService
from alerts.store import AlertStore, store_path
from core.contract import Device
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from tests.conftest import Collector, wait_until


class Running:
    def __init__(self, settings: Settings) -> None:
        self.svc = AlertService(settings)
        self.thread = threading.Thread(target=self.svc.run_forever, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.svc.mqtt_ok, 10)
        time.sleep(0.3)

    def stop(self) -> None:
        self.svc.stop()
        self.thread.join(10)


@pytest.fixture
def start_alerts(settings: Settings, start_ingest) -> Iterator[Callable[[], Running]]:  # type: ignore[no-untyped-def]
    made: list[Running] = []
    start_ingest()  # validates the device messages and hands the accepted ones to the engine

    def start() -> Running:
        r = Running(settings)
        made.append(r)
        return r

    yield start
    for r in made:
        r.stop()


def gas_device(settings: Settings, community: str = "lanshanjun") -> Device:
    reg = load_registry(ensure_registry(settings))
    return sorted((d for d in reg.values() if d.kind == "gas" and d.community == community),
                  key=lambda d: d.device_id)[0]


def send(publisher, dev: Device, lel: float) -> None:  # type: ignore[no-untyped-def]
    p = {"ts": int(time.time() * 1000), "m": {"lel_pct": lel}}
    topic = f"sc/{dev.community}/gas/{dev.device_id}/telemetry"
    publisher.publish(topic, orjson.dumps(p), qos=1).wait_for_publish(5)


def alerts_for(c: Collector, rule: str) -> list[dict]:  # type: ignore[type-arg]
    """Live (not retained) messages of this test's alert service; the broker is shared by tests."""
    return [orjson.loads(p) for _, p, retained in c.messages
            if p and not retained and orjson.loads(p).get("rule") == rule]


def test_gas_lel_high_raise_update_resolve(settings: Settings, start_alerts, collector, publisher) -> None:  # type: ignore[no-untyped-def]
    dev = gas_device(settings)
    sub = collector("sc/alerts/#")
    start_alerts()

    t0 = time.monotonic()
    send(publisher, dev, 31.0)
    assert sub.wait_for(lambda m: bool(alerts_for(sub, "gas_lel_high")), 5)
    latency = time.monotonic() - t0
    first = alerts_for(sub, "gas_lel_high")[0]
    assert latency < 2.0
    topics = {t for t, p, r in sub.messages if not r and p and orjson.loads(p)["alert_id"] == first["alert_id"]}
    assert topics == {f"sc/alerts/{dev.community}/{first['alert_id']}"}
    assert first["severity"] == "red" and first["state"] == "active"
    assert first["value"] == 31.0 and first["threshold"] == 25
    assert first["device_id"] == dev.device_id and first["compound_id"] == dev.compound_id
    assert first["kind"] == "gas" and first["metric"] == "lel_pct"
    assert first["lon"] == dev.lon and first["lat"] == dev.lat
    assert "31.0" in first["message"]

    # Same condition again: the same alert is updated, not a second one raised.
    time.sleep(1.1)
    send(publisher, dev, 33.5)
    assert sub.wait_for(lambda m: any(a["value"] == 33.5 for a in alerts_for(sub, "gas_lel_high")), 5)
    ids = {a["alert_id"] for a in alerts_for(sub, "gas_lel_high")}
    assert ids == {first["alert_id"]}

    # Clear: it resolves only after the hold-off (2 s in tests), then the retained copy is cleared.
    send(publisher, dev, 1.0)
    cleared_at = time.monotonic()
    assert sub.wait_for(lambda m: any(a["state"] == "resolved" for a in alerts_for(sub, "gas_lel_high")), 10)
    assert time.monotonic() - cleared_at >= settings.alert_holdoff_s - 0.1
    topic = f"sc/alerts/{dev.community}/{first['alert_id']}"
    assert sub.wait_for(lambda m: (topic, b"", False) in m, 5), "retained copy not cleared"

    store = AlertStore(store_path(settings.data_path))
    stored = [a for a in store.list() if a.rule == "gas_lel_high"]
    store.close()
    assert len(stored) == 1 and stored[0].state == "resolved"


def test_no_flap_while_wobbling(settings: Settings, start_alerts, collector, publisher) -> None:  # type: ignore[no-untyped-def]
    dev = gas_device(settings, "yanhu")
    sub = collector("sc/alerts/#")
    start_alerts()
    for v in (30, 5, 28, 4, 27, 3):  # clear spells shorter than the hold-off
        send(publisher, dev, v)
        time.sleep(0.5)
    time.sleep(0.5)
    high = alerts_for(sub, "gas_lel_high")
    assert len({a["alert_id"] for a in high}) == 1
    assert all(a["state"] == "active" for a in high)


def test_open_alert_survives_restart(settings: Settings, start_alerts, collector, publisher) -> None:  # type: ignore[no-untyped-def]
    dev = gas_device(settings, "gongyixincun")
    sub = collector("sc/alerts/#")
    first = start_alerts()
    send(publisher, dev, 40.0)
    assert sub.wait_for(lambda m: bool(alerts_for(sub, "gas_lel_high")), 5)
    alert_id = alerts_for(sub, "gas_lel_high")[0]["alert_id"]
    first.stop()

    start_alerts()
    send(publisher, dev, 45.0)  # still high after the restart, and higher: the same alert, updated
    assert sub.wait_for(lambda m: any(a["value"] == 45.0 for a in alerts_for(sub, "gas_lel_high")), 5)
    assert {a["alert_id"] for a in alerts_for(sub, "gas_lel_high")} == {alert_id}
