"""A device flooding the broker (real ingest process, real alert service): ingest cuts it to its
budget, and the alert engine raises one yellow `device_flooding` for it — with the cut count in
the message — that resolves once the device has calmed down."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import orjson

from alerts.rules import BUNDLED_RULES
from alerts.service import AlertService
from core.settings import Settings
from tests.conftest import wait_until
from tests.ingest.conftest import IngestProcess, gas_devices


def test_flooding_device_is_an_alert(settings: Settings, tmp_path: Path, collector, publisher) -> None:  # type: ignore[no-untyped-def]
    # The bundled rules, with a shorter calm (10 s) to keep the test quick.
    rules = tmp_path / "rules.yaml"
    rules.write_text(BUNDLED_RULES.read_text(encoding="utf-8").replace("calm_s: 10,", "calm_s: 3,"), encoding="utf-8")
    settings = replace(settings, alerts_rules_file=str(rules))
    babbler, quiet = gas_devices(settings, 2)
    sub = collector("sc/alerts/#")
    ing = IngestProcess(settings, SC_INGEST_DEVICE_RATE="5", SC_INGEST_DEVICE_BURST="20").start()
    svc = AlertService(settings)
    thread = threading.Thread(target=svc.run_forever, daemon=True)
    thread.start()
    try:
        ing.wait_connected()
        assert wait_until(lambda: svc.mqtt_ok, 10)
        base = int(time.time() * 1000) - 60_000
        topic = f"sc/{babbler.community}/gas/{babbler.device_id}/telemetry"
        t0 = time.monotonic()
        for i in range(600):  # as fast as the client goes: far past 5 msg/s
            publisher.publish(topic, orjson.dumps({"ts": base + i, "m": {"lel_pct": 1.0}}), qos=0)
        publisher.publish(f"sc/{quiet.community}/gas/{quiet.device_id}/telemetry",
                          orjson.dumps({"ts": base, "m": {"lel_pct": 1.0}}), qos=1).wait_for_publish(5)

        def flood() -> list[dict]:  # type: ignore[type-arg]
            return [a for a in (orjson.loads(p) for _, p, r in sub.messages if p and not r)
                    if a["rule"] == "device_flooding"]

        assert sub.wait_for(lambda m: bool(flood()), 15), f"no device_flooding alert: {ing.heartbeats()}"
        raised_s = time.monotonic() - t0
        first = flood()[0]
        assert first["device_id"] == babbler.device_id and first["severity"] == "yellow"
        assert {a["device_id"] for a in flood()} == {babbler.device_id}  # one, for the babbler only
        cut = sum(int((h.get("rate_limited_devices") or {}).get(babbler.device_id, 0)) for h in ing.heartbeats())
        assert cut > 0
        for a in flood():  # the cut count (ingest's dead letters `rate_limited`) is the value and in the message
            assert 1 <= a["value"] <= cut and f"{a['value']:.0f} 条报文超出单台限速" in a["message"]

        t_calm = time.monotonic()
        assert sub.wait_for(lambda m: any(a["state"] == "resolved" for a in flood()), 30), "never resolved"
        print(f"\ndevice_flooding raised {raised_s:.1f} s after the flood began; resolved "
              f"{time.monotonic() - t_calm:.1f} s after it stopped; {cut} messages cut")
        assert len({a["alert_id"] for a in flood()}) == 1
    finally:
        svc.stop()
        thread.join(15)
        ing.stop()
