"""Sign-in and staff actions on a full data disk (a real, filled tmpfs): a clear 503 — JSON for
/api, a page for the console — never a 500; the same requests work again once there is space."""

from __future__ import annotations

from core.diskfull import DISK_FULL_TEXT
from core.staff import Accounts, accounts_path
from dashboard.app import create_app
from tests.conftest import RunningAlerts, make_settings
from tests.dashboard.test_dash_api import insert
from tests.dashboard.test_dash_login import sign_in
from tests.faults.conftest import SmallDisk

TOKEN = "s3cret-token"


def test_sign_in_and_ack_answer_503_on_a_full_disk(small_disk: SmallDisk) -> None:
    s = make_settings(small_disk.root / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9",
                      api_token=TOKEN)
    running = RunningAlerts(s, broker=False)  # staff actions are commands to it
    running.__enter__()
    app = create_app(s)
    dctx = app.server.config["SC_DASHBOARD"]
    c = app.server.test_client()
    Accounts(accounts_path(s.data_path)).add("zhang", "张三", "correct horse")
    alert = insert(dctx.store)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert c.get("/login").status_code == 200  # the form (and its CSRF cookie) before the disk fills
        small_disk.fill()

        r = sign_in(c, "zhang", "correct horse")
        assert r.status_code == 503 and r.mimetype == "text/html", r.get_data(as_text=True)[:300]
        assert "数据盘已满" in r.get_data(as_text=True) and r.headers["Retry-After"]

        r = c.post(f"/api/alerts/{alert.alert_id}/ack", json={"by": "张三"}, headers=bearer)
        assert r.status_code == 503 and r.json == {"error": DISK_FULL_TEXT, "status": 503}

        small_disk.free()
        assert sign_in(c, "zhang", "correct horse").status_code == 302
        r = c.post(f"/api/alerts/{alert.alert_id}/ack", json={"by": "张三"}, headers=bearer)
        assert r.status_code == 200 and r.json["state"] == "acknowledged"
    finally:
        dctx.close()
        running.__exit__()
