"""kill -9 of the real `smartcommunity alerts` process, and a full `up` restart, against the real
broker and store: no open alert is resolved without a clearing reading, none is raised twice,
started_at is kept, the retained copies are back on the broker, and one cleared by hand is put back.

Deliberate change: the first engine counted every open alert clear from its start, so a restart
resolved them after the hold-off; now a restart resolves nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from alerts.store import AlertStore, store_path
from core.contract import Device
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from tests.conftest import Collector, make_settings, wait_until


def launch_alerts(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_MQTT_URL=settings.mqtt_url, SC_INFLUX_URL=settings.influx_url, SC_DATA_DIR=str(settings.data_path),
               SC_ALERT_HOLDOFF_S=str(settings.alert_holdoff_s), SC_ALERTS_CLIENT_ID=settings.alerts_client_id,
               SC_REGISTRY_POLL_S="0.5")
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "smartcommunity", "alerts"], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)


def alerts_ready(settings: Settings, pid: int) -> bool:
    p = settings.data_path / "run" / "alerts.json"
    try:
        doc = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return bool(doc.get("pid") == pid and doc.get("mqtt") == "ok")


def retained(settings: Settings, topic: str, wait_s: float = 1.5) -> dict[str, bytes]:
    """What a newcomer to the broker is handed for `topic`: the retained copies."""
    try:
        c = Collector(settings, topic)
    except (OSError, AssertionError):  # the broker is not (yet) there: nothing is retained for us
        return {}
    time.sleep(wait_s)
    c.close()
    return {t: p for t, p, r in c.messages if r and p}


def devices(settings: Settings) -> tuple[Device, Device]:
    reg = load_registry(ensure_registry(settings))
    gas = sorted((d for d in reg.values() if d.kind == "gas" and d.community == "yanhu"), key=lambda d: d.device_id)
    cam = sorted((d for d in reg.values() if d.kind == "camera" and d.community == "yanhu"),
                 key=lambda d: d.device_id)
    return gas[0], cam[0]


def send(pub: mqtt.Client, dev: Device, kind: str, doc: dict[str, Any]) -> None:
    pub.publish(f"sc/{dev.community}/{dev.kind}/{dev.device_id}/{kind}", orjson.dumps(doc), qos=1).wait_for_publish(5)


def live(sub: Collector) -> list[dict[str, Any]]:
    return [orjson.loads(p) for _, p, r in sub.messages if p and not r]


def test_kill_9_and_restart_resolves_nothing_and_raises_nothing_twice(
        settings: Settings, publisher: mqtt.Client, tmp_path: Path, start_ingest) -> None:  # type: ignore[no-untyped-def]
    gas, cam = devices(settings)
    start_ingest()
    sub = Collector(settings, "sc/alerts/yanhu/+")
    log = tmp_path / "alerts.log"
    proc = launch_alerts(settings, log)
    try:
        assert wait_until(lambda: alerts_ready(settings, proc.pid), 30), log.read_text(errors="replace")
        now = int(time.time() * 1000)
        send(publisher, gas, "telemetry", {"ts": now, "m": {"lel_pct": 55.0}})
        send(publisher, cam, "event", {"ts": now, "event": "tamper", "detail": "镜头被遮挡"})
        assert sub.wait_for(lambda m: {a["rule"] for a in live(sub)} >= {"gas_lel_high", "camera_tamper"}, 10)
        first = {a["rule"]: a for a in live(sub)}
        ids = {first["gas_lel_high"]["alert_id"], first["camera_tamper"]["alert_id"]}

        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: whatever was not in the store is lost
        proc.wait(10)
        proc = launch_alerts(settings, log)
        assert wait_until(lambda: alerts_ready(settings, proc.pid), 30), log.read_text(errors="replace")
        time.sleep(settings.alert_holdoff_s * 3 + 2)  # well past the hold-off, with no reading at all

        assert not [a for a in live(sub) if a["state"] == "resolved"], "a restart resolved an alert"
        copies = retained(settings, "sc/alerts/yanhu/+")
        kept = {orjson.loads(p)["alert_id"]: orjson.loads(p) for p in copies.values()}
        assert ids <= set(kept)
        for rule in ("gas_lel_high", "camera_tamper"):
            a = kept[first[rule]["alert_id"]]
            assert a["state"] == "active" and a["started_at"] == first[rule]["started_at"]

        # Someone clears a retained copy while the alert is open: it is put back.
        topic = f"sc/alerts/yanhu/{first['gas_lel_high']['alert_id']}"
        publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        assert wait_until(lambda: topic in retained(settings, topic, 0.5), 10), "cleared copy not re-asserted"

        # Still high after the restart, and higher: the same alert, updated; then a clearing reading resolves it.
        send(publisher, gas, "telemetry", {"ts": int(time.time() * 1000), "m": {"lel_pct": 62.0}})
        assert sub.wait_for(lambda m: any(a.get("value") == 62.0 for a in live(sub)), 10)
        assert {a["alert_id"] for a in live(sub) if a["rule"] == "gas_lel_high"} == {first["gas_lel_high"]["alert_id"]}
        send(publisher, gas, "telemetry", {"ts": int(time.time() * 1000), "m": {"lel_pct": 1.0}})
        assert sub.wait_for(lambda m: any(a["rule"] == "gas_lel_high" and a["state"] == "resolved"
                                          for a in live(sub)), 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        sub.close()
    store = AlertStore(store_path(settings.data_path))
    rows = [a for a in store.list() if a.device_id in (gas.device_id, cam.device_id)]
    store.close()
    assert sorted(a.rule for a in rows) == ["camera_tamper", "gas_lel_high"]  # none raised twice
    assert {a.rule: a.state for a in rows} == {"camera_tamper": "active", "gas_lel_high": "resolved"}


def test_full_up_restart_keeps_open_alerts(tmp_path: Path) -> None:
    """`up` stopped (its own broker with it: the retained copies are gone) and started again on the same
    data dir: the open alert is still open, not raised again, and back on the broker."""
    from smartcommunity.services import free_port
    from tests.smartcommunity.test_up import launch_up

    ports = {"mqtt": free_port(), "influx": free_port(), "http": free_port()}
    proc, env = launch_up(tmp_path, ports, SC_ALERT_HOLDOFF_S="2")
    settings = make_settings(Path(env["SC_DATA_DIR"]), mqtt_url=env["SC_MQTT_URL"], influx_url=env["SC_INFLUX_URL"])
    log = tmp_path / "up.log"
    try:
        beat = settings.data_path / "run" / "alerts.json"
        assert wait_until(lambda: beat.exists() and orjson.loads(beat.read_bytes()).get("mqtt") == "ok",
                          90, every=0.5), log.read_text(errors="replace")[-3000:]
        gas, _ = devices(settings)
        sub = Collector(settings, "sc/alerts/yanhu/+")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}")
        pub.connect("127.0.0.1", ports["mqtt"])
        pub.loop_start()
        send(pub, gas, "telemetry", {"ts": int(time.time() * 1000), "m": {"lel_pct": 55.0}})
        assert sub.wait_for(lambda m: any(a["rule"] == "gas_lel_high" for a in live(sub)), 10)
        red = next(a for a in live(sub) if a["rule"] == "gas_lel_high")
        pub.loop_stop()
        pub.disconnect()
        sub.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

        proc, env = launch_up(tmp_path, ports, SC_ALERT_HOLDOFF_S="2")
        topic = f"sc/alerts/yanhu/{red['alert_id']}"
        assert wait_until(lambda: topic in retained(settings, topic, 0.5), 90, every=1.0), \
            log.read_text(errors="replace")[-3000:]
        time.sleep(8)  # past the hold-off several times over
        copy = orjson.loads(retained(settings, topic)[topic])
        assert copy["state"] == "active" and copy["started_at"] == red["started_at"]
        store = AlertStore(store_path(settings.data_path))
        rows = [a for a in store.list() if a.device_id == gas.device_id]
        store.close()
        assert [(a.alert_id, a.state) for a in rows] == [(red["alert_id"], "active")]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
