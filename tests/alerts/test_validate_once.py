"""The alert engine acts only on what ingest accepted (real broker, real ingest, real alert service):
a `rate_limited` or invalid message never raises or updates an alert, a valid red reading raises
through the forwarded records (InfluxDB down or not), and an alert service killed and restarted loses
no record (its persistent session keeps what ingest forwarded meanwhile)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from alerts.service import AlertService
from alerts.store import AlertStore, store_path
from core import heartbeat
from core.contract import Device
from core.settings import Settings
from ingest.deadletter import DeadLetterStore
from ingest.deadletter import store_path as dead_path
from ingest.ratelimit import RATE_LIMITED
from ingest.service import Ingestor
from smartcommunity.services import free_port
from tests.conftest import wait_until
from tests.ingest.conftest import gas_devices

ROOT = Path(__file__).resolve().parents[2]


def topic(d: Device) -> str:
    return f"sc/{d.community}/gas/{d.device_id}/telemetry"


def reading(lel: float, ts_ms: int, **extra: float) -> bytes:
    return orjson.dumps({"ts": ts_ms, "m": {"lel_pct": lel, **extra}})


class Stack:
    """An in-process ingest and alert service on the test's broker."""

    def __init__(self, settings: Settings) -> None:
        self.ingest = Ingestor(settings)
        self.ingest.start()
        self.alerts = AlertService(settings)
        self.thread = threading.Thread(target=self.alerts.run_forever, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.ingest.mqtt_ok and self.alerts.mqtt_ok, 15)
        time.sleep(0.5)  # subscriptions acknowledged

    def red(self, device_id: str) -> list:  # type: ignore[type-arg]
        return [a for a in self.alerts.store.list() if a.device_id == device_id and a.rule == "gas_lel_high"]

    def close(self) -> None:
        self.alerts.stop()
        self.thread.join(15)
        self.ingest.close()


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    # A budget of 1 msg/s in bursts of 2: the third message in a row is `rate_limited`.
    s = replace(settings, ingest_device_rate=1.0, ingest_device_burst=2)
    st = Stack(s)
    yield st
    st.close()


def dead_reasons(settings: Settings, device: Device) -> list[str]:
    store = DeadLetterStore(dead_path(settings.data_path), 10_000, 1 << 30)
    try:
        return [d["reason"] for d in store.list() if device.device_id in d["topic"]]
    finally:
        store.close()


def test_rejected_messages_never_raise_or_update(settings: Settings, stack: Stack, publisher) -> None:  # type: ignore[no-untyped-def]
    limited, invalid, open_one, sentinel = gas_devices(settings, 4)
    now = int(time.time() * 1000)

    # An alert open on `open_one` (30 %LEL): what follows must not move its value.
    publisher.publish(topic(open_one), reading(30.0, now), qos=1).wait_for_publish(5)
    assert wait_until(lambda: stack.red(open_one.device_id), 10), "a valid red reading raised nothing"
    before = stack.red(open_one.device_id)[0]
    assert before.value == 30.0
    time.sleep(1.2)  # past the update throttle (SC_ALERTS_UPDATE_MIN_S): an accepted 90 would show

    # `limited`: two normal readings use its burst, the red one is cut (`rate_limited`) by ingest.
    # `invalid`: red readings ingest rejects (an unknown metric; out of range). `open_one` gets both kinds.
    for i, lel in enumerate((1.0, 1.0, 90.0)):
        publisher.publish(topic(limited), reading(lel, now + i), qos=1).wait_for_publish(5)
    publisher.publish(topic(invalid), reading(90.0, now, bogus=1.0), qos=1).wait_for_publish(5)
    publisher.publish(topic(invalid), reading(190.0, now + 1), qos=1).wait_for_publish(5)
    publisher.publish(topic(open_one), reading(90.0, now + 1, bogus=1.0), qos=1).wait_for_publish(5)
    # Its bucket is full again (2): the invalid one took a token, 45 the last, the 90 after it is cut.
    for i, lel in enumerate((45.0, 90.0)):
        publisher.publish(topic(open_one), reading(lel, now + 2 + i), qos=1).wait_for_publish(5)

    # A valid red reading of another device of the same community after them all: once its alert is
    # up, every record forwarded before it has been through the engine (one stream, in order).
    assert sentinel.community == open_one.community == limited.community == invalid.community
    publisher.publish(topic(sentinel), reading(40.0, now), qos=1).wait_for_publish(5)
    assert wait_until(lambda: stack.red(sentinel.device_id), 10)

    # Ingest hands a batch on before it writes the batch's dead letters: those of the sentinel's batch
    # may land just after its alert.
    for dev, want in ((limited, [RATE_LIMITED]), (invalid, ["bad_value", "unknown_metric"]),
                      (open_one, [RATE_LIMITED, "unknown_metric"])):
        assert wait_until(lambda d=dev, w=want: sorted(dead_reasons(settings, d)) == w, 10), \
            (dev.device_id, dead_reasons(settings, dev))
    assert stack.red(limited.device_id) == [] and stack.red(invalid.device_id) == []
    assert [a for a in stack.alerts.store.list() if a.device_id in (limited.device_id, invalid.device_id)] == []
    after = stack.red(open_one.device_id)
    assert len(after) == 1 and after[0].alert_id == before.alert_id
    assert after[0].value == 45.0, "only the accepted reading (45) may update the alert, not the cut or invalid 90s"
    # The engine did not validate anything: it got only what ingest accepted.
    assert stack.alerts.counters["received"] == stack.ingest.forward.forwarded
    assert stack.ingest.forward.forwarded == 5  # open_one 30 and 45, limited 1 and 1, the sentinel


def test_red_reading_raises_while_influxdb_is_down(settings: Settings, publisher) -> None:  # type: ignore[no-untyped-def]
    s = replace(settings, influx_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    st = Stack(s)
    try:
        (dev,) = gas_devices(s, 1)
        publisher.publish(topic(dev), reading(55.0, int(time.time() * 1000)), qos=1).wait_for_publish(5)
        assert wait_until(lambda: st.red(dev.device_id), 10), "no warning while InfluxDB is down"
        assert st.red(dev.device_id)[0].severity == "red"
        assert wait_until(lambda: st.ingest.state() == "spooling", 10)
    finally:
        st.close()


class AlertsProcess:
    def __init__(self, settings: Settings, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")} | settings.env()
        self.log = settings.data_path / f"alerts{'-'.join(args)}.log"
        settings.data_path.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", "alerts", *args],
                                         cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_alerts_killed_and_restarted_loses_no_record(settings: Settings, collector, publisher) -> None:  # type: ignore[no-untyped-def]
    devices = gas_devices(settings, 30)
    ingest = Ingestor(settings)
    ingest.start()
    sub = collector("sc/alerts/#")
    alerts = AlertsProcess(settings)
    try:
        assert wait_until(lambda: ingest.mqtt_ok, 10)
        assert wait_until(lambda: (settings.data_path / "run" / "alerts.json").exists()
                          and orjson.loads((settings.data_path / "run" / "alerts.json").read_bytes()).get("mqtt")
                          == "ok", 30), alerts.log.read_text()
        time.sleep(0.5)
        alerts.kill9()
        now = int(time.time() * 1000)
        for d in devices:  # accepted and forwarded while no engine runs
            publisher.publish(topic(d), reading(60.0, now), qos=1).wait_for_publish(5)
        assert wait_until(lambda: ingest.forward.forwarded >= len(devices), 10)
        time.sleep(0.5)

        def raised() -> set[str]:  # live copies (the shared broker keeps other tests' retained ones)
            return {m["device_id"] for m in (orjson.loads(p) for _, p, r in sub.messages if p and not r)
                    if m.get("rule") == "gas_lel_high"}

        assert raised() == set()
        alerts = AlertsProcess(settings)

        assert sub.wait_for(lambda _m: raised() >= {d.device_id for d in devices}, 30), \
            f"lost: {sorted({d.device_id for d in devices} - raised())}"
        store = AlertStore(store_path(settings.data_path))
        try:
            by_dev = {a.device_id: a for a in store.list() if a.rule == "gas_lel_high"}
        finally:
            store.close()
        assert set(by_dev) == {d.device_id for d in devices}
    finally:
        alerts.stop()
        ingest.close()


def gas_of(settings: Settings, community: str) -> Device:
    return next(d for d in gas_devices(settings, 10_000) if d.community == community)


class Partition:
    def __init__(self, settings: Settings, communities: set[str]) -> None:
        self.svc = AlertService(settings, frozenset(communities))
        self.thread = threading.Thread(target=self.svc.run_forever, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.svc.mqtt_ok, 15)

    def open_devices(self) -> set[str]:
        return {a.device_id for a in self.svc.engine.open.values()}

    def stop(self) -> None:
        self.svc.stop()
        self.thread.join(15)


def test_two_partitions_share_the_street(settings: Settings, start_ingest, publisher) -> None:  # type: ignore[no-untyped-def]
    start_ingest()
    west, east = {"yanling", "yanhu"}, {"gongyixincun", "lanshanjun"}
    devs = {c: gas_of(settings, c) for c in west | east}
    a, b = Partition(settings, west), Partition(settings, east)
    try:
        assert a.svc.client._client_id != b.svc.client._client_id  # each its own persistent session
        time.sleep(0.5)
        now = int(time.time() * 1000)
        for d in devs.values():
            publisher.publish(topic(d), reading(50.0, now), qos=1).wait_for_publish(5)
        mine = {c: {devs[c].device_id for c in part} for c, part in (("a", west), ("b", east))}
        assert wait_until(lambda: a.open_devices() == mine["a"] and b.open_devices() == mine["b"], 10), \
            (a.open_devices(), b.open_devices())
        assert a.svc.counters["received"] == 2 and b.svc.counters["received"] == 2  # only its own records
        beats = {h["name"] for h in heartbeat.read_all(settings.data_path, "alerts")} if wait_until(
            lambda: len(heartbeat.read_all(settings.data_path, "alerts")) == 2, 5) else set()
        assert beats == {"alerts-yanhu-yanling", "alerts-gongyixincun-lanshanjun"}

        # The east engine restarts: it takes up its own alerts from the shared store, re-publishes only
        # those, and leaves the west's alone; the west resolves its own as before.
        b.stop()
        b = Partition(settings, east)
        assert wait_until(lambda: b.svc.counters["published"] >= 2, 10)
        time.sleep(1.5)
        assert b.svc.counters["published"] == 2 and b.open_devices() == mine["b"]
        gone = devs["yanhu"]
        publisher.publish(topic(gone), reading(1.0, int(time.time() * 1000)), qos=1).wait_for_publish(5)
        assert wait_until(lambda: a.open_devices() == mine["a"] - {gone.device_id}, 15)
        time.sleep(settings.alert_holdoff_s + 1.5)
        assert b.open_devices() == mine["b"]
        store = AlertStore(store_path(settings.data_path))
        try:
            states = {x.device_id: x.state for x in store.list() if x.rule == "gas_lel_high"}
        finally:
            store.close()
        assert states == {d.device_id: "resolved" if d is gone else "active" for d in devs.values()}
    finally:
        a.stop()
        b.stop()
