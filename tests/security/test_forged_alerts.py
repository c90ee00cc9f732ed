"""Issue 12's first finding, replayed against the real alert service on the secure broker:
an anonymous `lel_pct` 90 raised a red alert, and eight fake `lel_pct` 0 auto-resolved a real,
acknowledged one. Now neither an anonymous client nor another (compromised) device can do either."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from alerts.service import AlertService
from core.accounts import INFLUX_WRITER, MQTT_ALERTS, MQTT_INGEST
from core.timebase import now_iso
from ingest.service import Ingestor
from tests.security.conftest import Probe, SecureStack, device_probe, telemetry, wait_until


@pytest.fixture
def alert_service(secure: SecureStack, tmp_path: Path) -> Iterator[AlertService]:
    s = replace(secure.settings, data_dir=str(tmp_path / "var"), registry_file=None, mqtt_account=MQTT_ALERTS,
                secrets_dir=str(secure.settings.secrets_path), mqtt_ca_file=str(secure.settings.ca_path))
    # Ingest (as svc.ingest) judges the device messages and hands the engine what it accepted.
    ing = Ingestor(replace(s, mqtt_account=MQTT_INGEST, influx_account=INFLUX_WRITER,
                           data_dir=str(tmp_path / "ingest-var")))
    ing.start()
    svc = AlertService(s)
    t = threading.Thread(target=svc.run_forever, daemon=True)
    t.start()
    assert wait_until(lambda: svc.mqtt_ok, timeout=15), "alert service could not connect as svc.alerts"
    assert wait_until(lambda: ing.mqtt_ok, timeout=15), "ingest could not connect as svc.ingest"
    time.sleep(0.5)  # subscriptions acknowledged
    yield svc
    svc.stop()
    t.join(10)
    ing.close()


def _red(svc: AlertService, device_id: str) -> list:  # type: ignore[type-arg]
    return [a for a in svc.store.list() if a.device_id == device_id and a.rule == "gas_lel_high"]


def test_forged_readings_neither_raise_nor_resolve(secure: SecureStack, probes: list[Probe],
                                                   alert_service: AlertService) -> None:
    victim, compromised = secure.devices("gas", "lanshanjun")[5:7]
    topic = f"sc/{victim.community}/gas/{victim.device_id}/telemetry"
    anon = Probe(secure, None, None, tls=False)
    probes.append(anon)
    assert anon.answered.wait(10) and anon.refused()
    anon.publish(topic, telemetry("lel_pct", 90.0))  # not connected: goes nowhere
    rogue = device_probe(secure, probes, compromised)
    rogue.publish(topic, telemetry("lel_pct", 90.0)).wait_for_publish(5)
    time.sleep(2.0)
    assert _red(alert_service, victim.device_id) == [], "a forged reading raised an alert"

    # The real device raises a real red alert; staff acknowledge it.
    real = device_probe(secure, probes, victim)
    real.publish(topic, telemetry("lel_pct", 90.0)).wait_for_publish(5)
    assert wait_until(lambda: _red(alert_service, victim.device_id), timeout=10), "the real reading raised nothing"
    alert = _red(alert_service, victim.device_id)[0]
    alert_service.store.acknowledge(alert.alert_id, "duty officer", "crew sent", now_iso())

    # Eight fake all-clear readings, then more than the hold-off (2 s): the alert stays open.
    for i in range(8):
        rogue.publish(topic, telemetry("lel_pct", 0.0, int(time.time() * 1000) + i)).wait_for_publish(5)
    time.sleep(secure.settings.alert_holdoff_s * 2 + 1.5)
    states = [a.state for a in _red(alert_service, victim.device_id)]
    assert states and all(s != "resolved" for s in states), states
    assert alert_service.counters["received"] >= 1
