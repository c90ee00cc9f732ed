"""The /api of contract §4 against a real AlertStore: listing, ack/resolve, token, errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from alerts.store import AlertStore
from core.contract import ALERT_TOPIC_ROOT, Alert
from core.settings import Settings
from dashboard.app import create_app
from tests.conftest import Collector, RunningAlerts, clear_retained_alerts, make_settings

CLOSED = "127.0.0.1:9"  # discard port: nothing listens, so publishing and health fail fast


def make_alert(
    severity: str = "red",
    state: str = "active",
    community: str = "lanshanjun",
    started: str = "2026-11-25T03:12:00.123Z",
) -> Alert:
    return Alert(
        alert_id=f"a-{uuid.uuid4().hex[:12]}",
        rule="gas_lel_high",
        severity=severity,
        state=state,
        community=community,
        compound_id="LSJ-03",
        device_id="G-000123",
        kind="gas",
        metric="lel_pct",
        value=31.0,
        threshold=25.0,
        lon=110.79,
        lat=32.65,
        started_at=started,
        updated_at=started,
        message="燃气浓度 31.0 %LEL ≥ 25 %LEL",
    )


class Published:
    """What reached `sc/alerts` on the real broker (the alert service publishes every change)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    @property
    def alerts(self) -> list[Alert]:
        return [Alert.from_json(d) for d in self.collector.json()]

    def wait(self, n: int) -> list[Alert]:
        self.collector.wait_for(lambda ms: len([m for m in ms if m[1]]) >= n, timeout=5)
        return self.alerts


@pytest.fixture
def dash_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "var", mqtt_url=f"mqtt://{CLOSED}", influx_url=f"http://{CLOSED}", registry_poll_s=0.2
    )


@pytest.fixture
def app_parts(settings: Settings, collector: Callable[[str], Collector]
              ) -> Iterator[tuple[FlaskClient, AlertStore, Published]]:
    clear_retained_alerts(settings)  # what earlier tests left on the shared broker is not this test's
    pub = Published(collector(f"{ALERT_TOPIC_ROOT}/#"))
    with RunningAlerts(settings):
        app = create_app(settings)
        dctx = app.server.config["SC_DASHBOARD"]
        yield app.server.test_client(), dctx.store, pub
        dctx.close()


def insert(store: AlertStore, **kw: Any) -> Alert:
    a = make_alert(**kw)
    store.insert(a, subject=f"{a.device_id}-{a.alert_id}")
    return a


def test_list_newest_first_and_filters(app_parts: tuple[FlaskClient, AlertStore, Published]) -> None:
    client, store, _ = app_parts
    old = insert(store, started="2026-11-25T01:00:00.000Z")
    new = insert(store, started="2026-11-25T02:00:00.000Z", community="yanhu", state="acknowledged")
    gone = insert(store, started="2026-11-25T03:00:00.000Z", state="resolved")

    r = client.get("/api/alerts")
    assert r.status_code == 200
    assert [a["alert_id"] for a in r.json] == [gone.alert_id, new.alert_id, old.alert_id]
    assert r.json[0]["message"] == "燃气浓度 31.0 %LEL ≥ 25 %LEL"
    assert set(make_alert().as_json()) <= set(r.json[0])

    assert [a["alert_id"] for a in client.get("/api/alerts?state=active").json] == [old.alert_id]
    both = client.get("/api/alerts?state=active,acknowledged").json
    assert [a["alert_id"] for a in both] == [new.alert_id, old.alert_id]
    assert [a["alert_id"] for a in client.get("/api/alerts?state=active&state=resolved").json] == [
        gone.alert_id,
        old.alert_id,
    ]
    assert [a["alert_id"] for a in client.get("/api/alerts?community=yanhu").json] == [new.alert_id]
    assert client.get("/api/alerts?state=active&community=yanhu").json == []


def test_list_rejects_bad_query(app_parts: tuple[FlaskClient, AlertStore, Published]) -> None:
    client, _, _ = app_parts
    for q in ("state=open", "community=nowhere", "limit=x", "limit=0"):
        r = client.get(f"/api/alerts?{q}")
        assert r.status_code == 400, q
        assert "error" in r.json


def test_ack_then_resolve(app_parts: tuple[FlaskClient, AlertStore, Published]) -> None:
    client, store, pub = app_parts
    a = insert(store)
    r = client.post(f"/api/alerts/{a.alert_id}/ack", json={"by": "张三", "note": "已派人到场"})
    assert r.status_code == 200, r.json
    assert r.json["state"] == "acknowledged" and r.json["acked_by"] == "张三" and r.json["note"] == "已派人到场"
    assert store.get(a.alert_id).state == "acknowledged"  # type: ignore[union-attr]
    assert client.get("/api/alerts?state=acknowledged").json[0]["alert_id"] == a.alert_id

    r = client.post(f"/api/alerts/{a.alert_id}/resolve", json={"by": "张三", "note": "阀门已关闭"})
    assert r.status_code == 200
    assert r.json["state"] == "resolved" and r.json["resolved_at"]
    assert [p.state for p in pub.wait(2)] == ["acknowledged", "resolved"]  # each change published, by the service

    # Already resolved: 409 for both, and nothing is changed or published.
    assert client.post(f"/api/alerts/{a.alert_id}/ack", json={"by": "李四"}).status_code == 409
    r = client.post(f"/api/alerts/{a.alert_id}/resolve")
    assert r.status_code == 409 and "resolved" in r.json["error"]
    assert store.get(a.alert_id).acked_by == "张三"  # type: ignore[union-attr]
    assert len(pub.alerts) == 2

    # The alert's page in the API carries its whole timeline: who did what, with each note.
    steps = client.get(f"/api/alerts/{a.alert_id}").json["timeline"]
    assert [(st["event"], st["by"], st["note"]) for st in steps] == [
        ("raised", "system", None), ("acknowledged", "张三", "已派人到场"), ("resolved", "张三", "阀门已关闭")]


def test_resolve_without_body_and_unknown_alert(app_parts: tuple[FlaskClient, AlertStore, Published]) -> None:
    client, store, _ = app_parts
    a = insert(store)
    assert client.post(f"/api/alerts/{a.alert_id}/resolve").status_code == 200
    for verb in ("ack", "resolve"):
        r = client.post(f"/api/alerts/a-nope/{verb}", json={"by": "x"})
        assert r.status_code == 404 and r.is_json


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"note": "no by"}', b'{"by": ""}', b'{"by": 3}', b'{"by": "x", "note": 1}'],
)
def test_ack_bad_body(app_parts: tuple[FlaskClient, AlertStore, Published], body: bytes) -> None:
    client, store, pub = app_parts
    a = insert(store)
    r = client.post(f"/api/alerts/{a.alert_id}/ack", data=body, content_type="application/json")
    assert r.status_code == 400 and "error" in r.json
    assert store.get(a.alert_id).state == "active"  # type: ignore[union-attr]
    assert pub.alerts == []


def test_resolve_bad_body(app_parts: tuple[FlaskClient, AlertStore, Published]) -> None:
    client, store, _ = app_parts
    a = insert(store)
    assert client.post(f"/api/alerts/{a.alert_id}/resolve", data=b"{oops").status_code == 400
    assert store.get(a.alert_id).state == "active"  # type: ignore[union-attr]


def test_unknown_api_path_is_json_404(app_parts: tuple[FlaskClient, AlertStore, Published]) -> None:
    client, _, _ = app_parts
    for path in ("/api/nope", "/api/alerts/x/y/z"):
        r = client.get(path)
        assert r.status_code == 404 and r.is_json


def test_token(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var", mqtt_url=f"mqtt://{CLOSED}", influx_url=f"http://{CLOSED}", api_token="s3cret")
    app = create_app(s)
    client = app.server.test_client()
    store = app.server.config["SC_DASHBOARD"].store
    a = insert(store)
    good = {"Authorization": "Bearer s3cret"}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret"},
        {"Authorization": "Basic s3cret"},
    ):
        r = client.get("/api/alerts", headers=headers)
        assert r.status_code == 401 and r.is_json and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.post(f"/api/alerts/{a.alert_id}/ack", json={"by": "x"}, headers=headers).status_code == 401
        assert client.post(f"/api/alerts/{a.alert_id}/resolve", headers=headers).status_code == 401
        assert client.get("/api/nope", headers=headers).status_code == 401
    assert store.get(a.alert_id).state == "active"  # type: ignore[union-attr]
    assert client.get("/api/alerts", headers=good).status_code == 200
    # Let in, the ack reaches the alert service: not running here, so a clear 503 and nothing changed.
    r = client.post(f"/api/alerts/{a.alert_id}/ack", json={"by": "x"}, headers=good)
    assert r.status_code == 503 and "alerts service" in r.json["error"]
    assert store.get(a.alert_id).state == "active"  # type: ignore[union-attr]
    # Health stays open (monitoring probes carry no token); services are down here, hence 503.
    assert client.get("/api/health").status_code == 503
    app.server.config["SC_DASHBOARD"].close()
