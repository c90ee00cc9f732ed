"""Staff commands against the real alert service (on the real broker): the one writer of alert
state answers each command with the new state or a refusal, publishes the change itself, applies a
command sent twice once, and a sender to a stopped service gets a clear `ServiceDown`."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Callable

import orjson
import pytest

from alerts.command import Command, ServiceDown, endpoint_path
from alerts.command.client import endpoint, send
from alerts.store import COMMAND, AlertStore, store_path
from core.contract import ALERT_TOPIC_ROOT, Alert
from core.settings import Settings
from core.timebase import now_iso
from tests.conftest import Collector, RunningAlerts


def open_alert(store: AlertStore) -> Alert:
    now = now_iso()
    a = Alert(alert_id=f"a-{uuid.uuid4().hex[:12]}", rule="water_leak", severity="orange", state="active",
              community="yanhu", compound_id=None, device_id=f"W-{uuid.uuid4().hex[:6]}", kind="water",
              metric="leak", value=True, threshold=True, lon=110.79, lat=32.65, started_at=now, updated_at=now,
              message="漏水")
    store.insert(a, subject=a.device_id or "")
    return a


def acks(store: AlertStore, alert_id: str) -> int:
    return sum(st.event == "acknowledged" for st in store.timeline(alert_id))


def test_ack_is_applied_by_the_service_and_published_by_it(settings: Settings,
                                                          collector: Callable[[str], Collector]) -> None:
    sub = collector(f"{ALERT_TOPIC_ROOT}/#")
    with RunningAlerts(settings) as svc:
        a = open_alert(svc.store)
        ans = send(settings, Command("ack", {"alert_id": a.alert_id, "note": "已派人"}, "张三", "api"))
        assert ans.status == 200 and ans.body["alert"]["state"] == "acknowledged"
        assert ans.body["alert"]["acked_by"] == "张三"
        # The engine holds the new state at once (no re-read of the store), and it is on the broker.
        assert any(x.alert_id == a.alert_id and x.state == "acknowledged" for x in svc.engine.open.values())
        assert sub.wait_for(lambda ms: any(p and orjson.loads(p)["state"] == "acknowledged" for _, p, _ in ms), 5)
        # A refusal says why and changes nothing.
        gone = send(settings, Command("resolve", {"alert_id": "a-nope"}, "张三", "api"))
        assert gone.status == 404 and "a-nope" in gone.body["error"]


def test_the_same_command_twice_is_applied_once(settings: Settings) -> None:
    with RunningAlerts(settings) as svc:
        a = open_alert(svc.store)
        cmd = Command("ack", {"alert_id": a.alert_id, "note": "第一次"}, "张三", "api")
        first, again = send(settings, cmd), send(settings, cmd)
        assert first.status == again.status == 200
        assert again.body.get("replayed") is True
        assert acks(svc.store, a.alert_id) == 1


def test_a_command_applied_just_before_a_stop_is_not_applied_again(settings: Settings) -> None:
    """The state a crash between the commit and the kept answer leaves: the change and its command id
    are in the store (one transaction), the answer is not. Sent again after the restart: applied once."""
    store = AlertStore(store_path(settings.data_path))
    a = open_alert(store)
    cmd = Command("ack", {"alert_id": a.alert_id}, "张三", "api")
    token = COMMAND.set((cmd.command_id, cmd.name, cmd.actor, now_iso()))
    try:
        assert store.acknowledge(a.alert_id, "张三", None, now_iso()) is not None
    finally:
        COMMAND.reset(token)
    assert store.command(cmd.command_id) == (None, None)  # applied, not answered
    store.close()
    with RunningAlerts(settings) as svc:
        ans = send(settings, cmd)
        assert ans.status == 200 and ans.body["applied_before_restart"] is True
        assert ans.body["alert"]["state"] == "acknowledged"
        assert acks(svc.store, a.alert_id) == 1


def test_a_stopped_service_is_a_clear_refusal_and_nothing_changes(settings: Settings) -> None:
    with RunningAlerts(settings) as svc:
        a = open_alert(svc.store)
    # The service stopped: its endpoint is gone, and a stale one (a crash) refuses the connection.
    assert not endpoint_path(settings.data_path).exists()
    with pytest.raises(ServiceDown, match="not running"):
        send(settings, Command("ack", {"alert_id": a.alert_id}, "张三", "api"))
    endpoint_path(settings.data_path).write_bytes(orjson.dumps({"url": "http://127.0.0.1:9", "secret": "x"}))
    with pytest.raises(ServiceDown):
        send(settings, Command("ack", {"alert_id": a.alert_id}, "张三", "api"))
    store = AlertStore(store_path(settings.data_path))
    assert store.get(a.alert_id).state == "active"  # type: ignore[union-attr]
    store.close()


@pytest.mark.parametrize(("auth", "body", "status"), [
    ("Bearer wrong", b'{"id": "c-12345678", "name": "ack", "args": {}}', 401),
    (None, b"not json", 400),
    (None, b'{"id": "c-12345678", "name": "drop_table", "args": {}}', 400),
    (None, b'{"id": "c-12345678", "name": "ack", "args": {"alert_id": "a", "sql": "x"}}', 400),
    (None, b'{"name": "ack", "args": {"alert_id": "a"}}', 400),
])
def test_a_bad_command_is_refused_with_its_reason(settings: Settings, auth: str | None, body: bytes,
                                                  status: int) -> None:
    with RunningAlerts(settings) as svc:
        a = open_alert(svc.store)
        host, port, secret = endpoint(settings)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("POST", "/command", body=body.replace(b'"a"', f'"{a.alert_id}"'.encode()),
                     headers={"Authorization": auth or f"Bearer {secret}"})
        resp = conn.getresponse()
        doc = orjson.loads(resp.read())
        conn.close()
        assert resp.status == status and doc["error"]
        assert svc.store.get(a.alert_id).state == "active"  # type: ignore[union-attr]
        assert svc.commands.counters["applied"] == 0
