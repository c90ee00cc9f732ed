"""SC_STORE_URL=postgresql://... switches the running system: the alert service keeps the alerts it
raises and the staff commands it applies in PostgreSQL, and the dashboard reads them from there."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from alerts.command import Command
from alerts.command.client import send
from alerts.store import store_path
from alerts.store.postgres import PostgresStore
from dashboard.app import Dashboard
from tests.alerts.test_guard_cli import gas_reading
from tests.conftest import RunningAlerts, make_settings, wait_until


def test_the_alert_service_and_the_dashboard_keep_alerts_in_postgresql(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "var"
    settings = make_settings(data, mqtt_url="mqtt://127.0.0.1:9", store_url=pg_url)  # no broker: commands work
    with RunningAlerts(settings, broker=False) as svc:
        assert isinstance(svc.store, PostgresStore)
        aid = gas_reading(svc, 62.0)  # raised by the engine from a red reading
        cmd = Command("ack", {"alert_id": aid, "note": "已派人"}, "张三", "api")
        ans = send(settings, cmd)
        assert ans.status == 200 and ans.body["alert"]["acked_by"] == "张三"
        dash = Dashboard(settings, live_mqtt=False)
        try:
            assert isinstance(dash.store, PostgresStore)
            seen = dash.store.get(aid)
            assert seen is not None and seen.state == "acknowledged" and seen.acked_by == "张三"
            # The live picture (dashboard/state.py) follows the change feed in PostgreSQL.
            live = wait_until(lambda: dash.state.get(aid), timeout=10)
            assert live is not None and live.state == "acknowledged"
        finally:
            dash.close()
    # What is in the database itself, read past the store.
    with psycopg.connect(pg_url, row_factory=dict_row) as db:
        row = db.execute("SELECT state, acked_by, note, rule FROM alerts WHERE alert_id = %s", (aid,)).fetchone()
        assert row is not None and row["rule"].startswith("gas")
        assert (row["state"], row["acked_by"], row["note"]) == ("acknowledged", "张三", "已派人")
        steps = db.execute("SELECT event, actor FROM alert_events WHERE alert_id = %s ORDER BY seq", (aid,)).fetchall()
        assert [s["event"] for s in steps][:1] == ["raised"]
        assert {"event": "acknowledged", "actor": "张三"} in steps
        done = db.execute("SELECT name, actor, status FROM commands WHERE command_id = %s",
                          (cmd.command_id,)).fetchone()
        assert done == {"name": "ack", "actor": "张三", "status": 200}
        assert db.execute("SELECT count(*) AS n FROM changes WHERE alert_id = %s", (aid,)).fetchone()["n"] >= 2
    assert not store_path(data).exists()  # nothing went to a SQLite file beside it
