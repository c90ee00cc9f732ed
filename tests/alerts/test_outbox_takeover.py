"""The takeover drill of notifications across hosts: engine A (`smartcommunity alerts --standby`, its own
data folder, the store on PostgreSQL) raises an alert whose notification its gateway refuses (HTTP 500),
A is killed (kill -9), engine B on another data folder takes the lease over, the gateway comes back,
and the notification arrives once, sent by B from the outbox in the store."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from alerts.store import open_store
from core.registry import system_registry
from core.settings import Settings
from core.validation import Telemetry
from ingest.forward import encode, records_topic
from tests.alerts.channels.receivers import Webhook
from tests.alerts.test_lease import Engine
from tests.conftest import wait_until


@pytest.fixture
def gateway() -> Iterator[Webhook]:
    h = Webhook(mode="error")  # the SMS gateway, failing: the notification stays pending
    yield h
    h.close()


def heartbeat_notify(data: Path) -> dict[str, dict[str, object]]:
    try:
        doc = orjson.loads((data / "run" / "alerts.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return dict(doc.get("notify") or {})


def test_a_pending_notification_of_a_killed_engine_is_sent_once_by_the_one_that_takes_over(
        settings: Settings, pg_url: str, tmp_path: Path, gateway: Webhook) -> None:
    s = replace(settings, alerts_webhook_url=gateway.url, notify_retry_first_s=0.3, notify_retry_max_s=0.6)
    a = Engine(s, tmp_path / "host-a", pg_url)
    b: Engine | None = None
    store = open_store(pg_url)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-ingest-" + str(os.getpid()))
    try:
        assert wait_until(lambda: "re-published" in a.log.read_text(errors="replace"), timeout=30), \
            a.log.read_text(errors="replace")[-2000:]
        b = Engine(s, tmp_path / "host-b", pg_url)  # another host: its own data folder, the same database
        gas = next(d for d in system_registry(settings).values() if d.kind == "gas")
        pub.connect(settings.mqtt.host, settings.mqtt.port)
        pub.loop_start()
        pub.publish(records_topic(gas.community),
                    encode([Telemetry(gas, int(time.time() * 1000), None, {"lel_pct": 62.0})]), qos=1)
        assert wait_until(lambda: any(x.device_id == gas.device_id for x in store.list(limit=20)), timeout=15), \
            a.log.read_text(errors="replace")[-3000:]
        alert_id = next(x.alert_id for x in store.list(limit=20) if x.device_id == gas.device_id)
        assert wait_until(lambda: gateway.attempts >= 2, timeout=10), a.log.read_text(errors="replace")[-3000:]
        assert gateway.received == []  # refused so far: pending in A's outbox

        a.proc.kill()  # the host dies: the notification was never delivered
        killed = time.monotonic()
        a.proc.wait(5)
        holder = store.leases()[0]["holder"]
        assert wait_until(lambda: store.leases()[0]["holder"] != holder, timeout=15, every=0.1), \
            b.log.read_text(errors="replace")[-3000:]
        assert store.leases()[0]["holder"].split(":")[1] == str(b.proc.pid)
        taken = time.monotonic() - killed
        gateway.mode = "ok"  # the gateway is back
        assert wait_until(lambda: any(r.body.get("alert_id") == alert_id for r in gateway.received), timeout=15,
                          every=0.05), b.log.read_text(errors="replace")[-3000:]
        print(f"lease taken {taken:.1f} s after the kill; the pending notification sent by B "
              f"{time.monotonic() - killed:.1f} s after it")
        time.sleep(2.0)  # anything sent twice would be here by now (retries every 0.6 s at most)
        assert [r.body.get("alert_id") for r in gateway.received].count(alert_id) == 1
        assert wait_until(lambda: (heartbeat_notify(tmp_path / "host-b").get("gateway") or {}).get("delivered") == 1,
                          timeout=5), "B's heartbeat does not count the delivery as its own"
    finally:
        pub.loop_stop()
        store.close()
        for e in (a, b):
            if e is not None:
                e.stop()
