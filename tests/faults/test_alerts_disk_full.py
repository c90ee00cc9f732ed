"""The alert service on a full data disk (a real, filled tmpfs): a red reading is published on
`sc/alerts` and reaches a webhook as fast as with space, the heartbeat keeps beating, and once space
is back every held row, timeline step and outbox line is written with its true time.

The slow variant keeps the disk full for 5 minutes and also resolves an alert while it is full."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerts.delivery import outbox_path
from alerts.metrics import add_alerts
from alerts.service import AlertService
from alerts.store import AlertStore, store_path
from core import heartbeat
from core.contract import Device
from core.prometheus import HeartbeatCollector, render
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from core.timebase import epoch
from tests.alerts.channels.receivers import Webhook
from tests.conftest import Collector, wait_until
from tests.faults.conftest import SmallDisk


def gas_devices(settings: Settings, n: int) -> list[Device]:
    reg = load_registry(ensure_registry(settings))
    return sorted((d for d in reg.values() if d.kind == "gas" and d.community == "yanhu"),
                  key=lambda d: d.device_id)[:n]


def reading(publisher, dev: Device, lel: float) -> int:  # type: ignore[no-untyped-def]
    ts = int(time.time() * 1000)
    publisher.publish(f"sc/{dev.community}/gas/{dev.device_id}/telemetry",
                      orjson.dumps({"ts": ts, "m": {"lel_pct": lel}}), qos=1).wait_for_publish(5)
    return ts


def published(sub: Collector, dev: Device, state: str = "active") -> dict | None:  # type: ignore[type-arg]
    for _, p, retained in sub.messages:
        if p and not retained:
            a = orjson.loads(p)
            if a.get("device_id") == dev.device_id and a.get("rule") == "gas_lel_high" and a["state"] == state:
                return a  # type: ignore[no-any-return]
    return None


def held_on_metrics(s: Settings) -> float:
    text = render(HeartbeatCollector(s.data_path, {"alerts": add_alerts}))
    return sum(x.value for fam in text_string_to_metric_families(text) for x in fam.samples
               if x.name in ("sc_alerts_store_held", "sc_alerts_outbox_held"))


@pytest.mark.parametrize("full_s", [pytest.param(1.5, id="brief"),
                                    pytest.param(300.0, id="5min", marks=[pytest.mark.slow, pytest.mark.timeout(900)])])
def test_red_reading_on_a_full_disk(full_s: float, settings: Settings, small_disk: SmallDisk, tmp_path: Path,
                                    collector, publisher, start_ingest) -> None:  # type: ignore[no-untyped-def]
    start_ingest()  # on the test's own (not full) disk: it hands the engine what it accepts
    hook = Webhook()
    chans = tmp_path / "channels.yaml"
    chans.write_text(f"channels:\n  - {{id: hook, kind: webhook, url: '{hook.url}/hook'}}\n", encoding="utf-8")
    s = replace(settings, data_dir=str(small_disk.root / "var"), alerts_channels_file=str(chans))
    warm, with_space, on_full, later = gas_devices(s, 4)
    sub = collector("sc/alerts/#")
    svc = AlertService(s)
    thread = threading.Thread(target=svc.run_forever, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: svc.mqtt_ok and heartbeat.read_all(s.data_path, "alerts"), 10)

        # The first alert of a process loads the places around it: not what is measured here.
        reading(publisher, warm, 30.0)
        assert sub.wait_for(lambda m: published(sub, warm) is not None, 20)
        t0 = time.monotonic()
        reading(publisher, with_space, 30.0)
        assert sub.wait_for(lambda m: published(sub, with_space) is not None, 10)
        latency_space = time.monotonic() - t0
        assert len(hook.wait_for(2, 10)) >= 2

        taken = small_disk.fill()
        t_full = time.monotonic()
        time.sleep(1.5)  # a beat or two on the full disk
        t0 = time.monotonic()
        ts = reading(publisher, on_full, 30.0)
        assert sub.wait_for(lambda m: published(sub, on_full) is not None, 10), "no alert on a full disk"
        latency_full = time.monotonic() - t0
        alert = published(sub, on_full)
        assert alert is not None
        # Its start is when the reading came, not when space came back.
        assert abs(epoch(alert["started_at"]) - ts / 1000) < 2.0
        got = hook.wait_for(3, 10)
        assert any(on_full.device_id in str(r.body) for r in got), "the webhook never heard of it"
        # Something really could not be written, and was kept.
        assert wait_until(lambda: svc.store.holding or svc.delivery.outbox.held, 5)
        assert thread.is_alive()
        beats = heartbeat.read_all(s.data_path, "alerts")
        assert beats and beats[0]["fresh"] and beats[0].get("disk_full") is True
        assert wait_until(lambda: held_on_metrics(s) > 0, 5), "/metrics does not show what is held"
        print(f"\nred reading -> sc/alerts: with space {latency_space * 1000:.0f} ms, "
              f"on a full disk {latency_full * 1000:.0f} ms ({taken / 2**20:.1f} MiB filled)")
        assert latency_full < max(2.0, 4 * latency_space)

        if full_s > 60:  # the long run: one alert resolved and another raised while the disk stays full
            time.sleep(full_s / 2)
            reading(publisher, with_space, 1.0)
            assert sub.wait_for(lambda m: published(sub, with_space, "resolved") is not None, 15)
            reading(publisher, later, 60.0)
            assert sub.wait_for(lambda m: published(sub, later) is not None, 10)
            time.sleep(max(0.0, full_s - (time.monotonic() - t_full)))
            beats = heartbeat.read_all(s.data_path, "alerts")
            assert thread.is_alive() and beats and beats[0]["fresh"]

        small_disk.free()
        t_free = time.monotonic()
        assert wait_until(lambda: not svc.store.holding and not svc.delivery.outbox.held, 15)
        print(f"held rows, steps and outbox lines written {time.monotonic() - t_free:.1f} s after space came back "
              f"(disk full {time.monotonic() - t_full:.0f} s)")
        assert thread.is_alive()
    finally:
        svc.stop()
        thread.join(15)
        hook.close()

    devices = [warm, with_space, on_full] + ([later] if full_s > 60 else [])
    store = AlertStore(store_path(s.data_path))
    try:
        rows = {a.device_id: a for a in store.list(rule="gas_lel_high")}
        assert set(rows) == {d.device_id for d in devices}  # 0 alerts lost
        late = rows[on_full.device_id]
        assert late.started_at == alert["started_at"]
        timelines = {d.device_id: store.timeline(rows[d.device_id].alert_id) for d in devices}
        conditions = store.load_conditions()
    finally:
        store.close()
    for dev_id, steps in timelines.items():
        events = [st.event for st in steps]
        assert events[0] == "raised", (dev_id, events)
        # 0 notification steps missing: every alert raised was delivered, and the delivery recorded.
        assert [st for st in steps if st.event == "notified" and st.data.get("delivered")], (dev_id, events)
    # The condition state of the alert raised on the full disk was written too (a restart carries on).
    assert ("gas_lel_high", on_full.device_id) in conditions
    steps = timelines[on_full.device_id]
    assert steps[0].at == alert["started_at"]
    gap = [st for st in steps if st.event == "written_late"]
    assert len(gap) == 1 and gap[0].data["from"] <= steps[0].at
    if full_s > 60:
        first = rows[with_space.device_id]
        assert first.state == "resolved" and epoch(first.resolved_at) < time.time() - 60  # its true time
        assert any(st.event == "resolved" for st in timelines[with_space.device_id])
    lines = [orjson.loads(x) for x in outbox_path(s.data_path).read_bytes().splitlines() if x.strip()]
    assert any(e["alert_id"] == late.alert_id and e["event"] == "raised" for e in lines)


def test_alert_service_restarted_on_a_full_disk(settings: Settings, small_disk: SmallDisk, tmp_path: Path,
                                                collector, publisher, start_ingest) -> None:  # type: ignore[no-untyped-def]
    """Restarted while the disk is full (its database cannot be opened for writing), the engine still
    starts, warns, and writes everything once there is room."""
    start_ingest()  # on the test's own (not full) disk: it hands the engine what it accepts
    hook = Webhook()
    chans = tmp_path / "channels.yaml"
    chans.write_text(f"channels:\n  - {{id: hook, kind: webhook, url: '{hook.url}/hook'}}\n", encoding="utf-8")
    s = replace(settings, data_dir=str(small_disk.root / "var"), alerts_channels_file=str(chans))
    (dev,) = gas_devices(s, 1)
    sub = collector("sc/alerts/#")
    first = AlertService(s)
    first.delivery.start()
    first.engine.save(seen=True)
    heartbeat.write(s.data_path, "alerts", first.snapshot())
    first.delivery.stop()
    first.store.close()

    small_disk.fill()
    svc = AlertService(s)  # must not raise on the full disk
    assert svc.store.degraded
    thread = threading.Thread(target=svc.run_forever, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: svc.mqtt_ok, 10)
        time.sleep(0.5)
        ts = reading(publisher, dev, 30.0)
        assert sub.wait_for(lambda m: published(sub, dev) is not None, 20), "no alert after a restart on a full disk"
        alert = published(sub, dev)
        assert alert is not None and abs(epoch(alert["started_at"]) - ts / 1000) < 3.0
        assert any(dev.device_id in str(r.body) for r in hook.wait_for(1, 10))
        assert thread.is_alive()
        assert wait_until(lambda: heartbeat.cannot_write(s.data_path) == ["alerts"], 5)

        small_disk.free()
        assert wait_until(lambda: not svc.store.degraded and not svc.store.holding
                          and not svc.delivery.outbox.held, 15)
    finally:
        svc.stop()
        thread.join(15)
        hook.close()
    store = AlertStore(store_path(s.data_path))
    try:
        row = store.get(alert["alert_id"])
        steps = [st.event for st in store.timeline(alert["alert_id"])]
    finally:
        store.close()
    assert row is not None and row.started_at == alert["started_at"]
    assert steps[0] == "raised" and "notified" in steps and "written_late" in steps, steps
