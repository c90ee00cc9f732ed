"""/api/health against real and absent services, /metrics, and alert publishing on a real broker."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import orjson

from core import heartbeat
from core.contract import Alert
from core.settings import Settings
from dashboard.app import create_app
from dashboard.health import check_mqtt
from smartcommunity.services import RunningService
from tests.conftest import Collector, make_settings, wait_until


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: nothing listens there


def beat(data: Path, name: str, **extra: object) -> None:
    heartbeat.write(data, name, {"counters": {"received": 10, "stored": 8, "deadlettered": 2}, **extra})


def test_health_503_when_services_are_down(tmp_path: Path) -> None:
    s = make_settings(
        tmp_path / "var", mqtt_url=f"mqtt://127.0.0.1:{closed_port()}", influx_url=f"http://127.0.0.1:{closed_port()}"
    )
    beat(s.data_path, "ingest-0")
    beat(s.data_path, "alerts")
    app = create_app(s)
    t0 = time.monotonic()
    r = app.server.test_client().get("/api/health")
    assert time.monotonic() - t0 < 5
    assert r.status_code == 503
    assert r.json["mqtt"] == "down" and r.json["influxdb"] == "down"
    assert r.json["ingest"] == "ok" and r.json["alerts"] == "ok"
    assert "error" in r.json["details"]["mqtt"]
    app.server.config["SC_DASHBOARD"].close()


def test_health_200_with_real_services(settings: Settings, broker: RunningService, influxd: RunningService) -> None:
    app = create_app(settings)
    client = app.server.test_client()
    dctx = app.server.config["SC_DASHBOARD"]
    # No worker heartbeat yet: ingest and alerts are down.
    r = client.get("/api/health")
    assert r.status_code == 503
    assert r.json["mqtt"] == "ok" and r.json["influxdb"] == "ok"
    assert r.json["ingest"] == "down" and r.json["alerts"] == "down"

    beat(settings.data_path, "ingest-0")
    beat(settings.data_path, "alerts")
    dctx.health.cache_s = 0
    r = client.get("/api/health")
    assert r.status_code == 200, r.json
    assert {k: r.json[k] for k in ("mqtt", "influxdb", "ingest", "alerts")} == dict.fromkeys(
        ("mqtt", "influxdb", "ingest", "alerts"), "ok"
    )

    # A stale or stopped heartbeat counts as down.
    heartbeat.write(settings.data_path, "ingest-0", {"stopped": True})
    r = client.get("/api/health")
    assert r.status_code == 503 and r.json["ingest"] == "down"
    dctx.close()


def test_mqtt_check_is_a_real_connect(broker: RunningService) -> None:
    s = make_settings(Path("/nonexistent"), mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}")
    assert check_mqtt(s)[0] == "ok"
    # Something that accepts TCP but speaks no MQTT is down.
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        bad = make_settings(Path("/nonexistent"), mqtt_url=f"mqtt://127.0.0.1:{port}")
        status, detail = check_mqtt(bad, timeout_s=0.5)
    assert status == "down" and "error" in detail


def test_metrics(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    beat(s.data_path, "ingest-0", deadlettered_by_reason={"bad_json": 1, "unknown_device": 1}, lag_ms=1500)
    heartbeat.write(s.data_path, "ingest-1", {"counters": {"received": 5, "stored": 5, "spooled": 3, "replayed": 3}})
    app = create_app(s)
    r = app.server.test_client().get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    text = r.data.decode()
    assert 'sc_ingest_received_total{worker="ingest-0"} 10' in text
    assert 'sc_ingest_received_total{worker="ingest-1"} 5' in text
    assert 'sc_ingest_stored_total{worker="ingest-0"} 8' in text
    assert 'sc_ingest_spooled_total{worker="ingest-1"} 3' in text
    assert 'sc_ingest_replayed_total{worker="ingest-1"} 3' in text
    assert 'sc_ingest_deadlettered_by_reason_total{reason="bad_json",worker="ingest-0"} 1' in text
    assert 'sc_ingest_lag_seconds{worker="ingest-0"} 1.5' in text
    assert 'sc_worker_up{part="ingest",worker="ingest-0"} 1' in text
    assert text.count("# TYPE sc_ingest_received_total counter") == 1  # one family header, many series
    app.server.config["SC_DASHBOARD"].close()


def test_ack_and_resolve_are_published(alert_service: object, settings: Settings) -> None:
    """The alert service (which alone publishes on sc/alerts) applies the dashboard's ack and resolve."""
    app = create_app(settings)
    dctx = app.server.config["SC_DASHBOARD"]
    client = app.server.test_client()
    now = "2026-11-25T03:12:00.123Z"
    a = Alert(
        f"a-{uuid.uuid4().hex[:12]}",
        "water_leak",
        "orange",
        "active",
        "yanhu",
        "YH-01",
        "W-000001",
        "water",
        "leak",
        True,
        True,
        110.79,
        32.65,
        now,
        now,
        "漏水",
    )
    dctx.store.insert(a, "W-000001")
    topic = f"sc/alerts/yanhu/{a.alert_id}"
    live = Collector(settings, topic)
    try:
        assert client.post(f"/api/alerts/{a.alert_id}/ack", json={"by": "王五"}).status_code == 200
        assert live.wait_for(lambda m: any(p and orjson.loads(p)["state"] == "acknowledged" for _, p, _ in m))
        # Retained while unresolved: a late subscriber gets the acknowledged state.
        late = Collector(settings, topic)
        assert late.wait_for(lambda m: bool(m))
        assert orjson.loads(late.messages[0][1])["state"] == "acknowledged" and late.messages[0][2]
        late.close()

        assert client.post(f"/api/alerts/{a.alert_id}/resolve", json={"by": "王五"}).status_code == 200
        assert live.wait_for(lambda m: any(p and orjson.loads(p)["state"] == "resolved" for _, p, _ in m))
        # The retained copy is cleared on resolution (an empty retained message, after the resolved copy).
        assert live.wait_for(lambda m: any(not p for _, p, _ in m))
        after = Collector(settings, topic)
        assert not wait_until(lambda: after.messages, timeout=1.0)
        after.close()
    finally:
        live.close()
        dctx.close()
