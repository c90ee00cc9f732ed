"""A muted alert (alerts/inhibit.py) says why and links to its cause: on /api (alongside the contract's
fields), in the console list and on its own page — from a store the real engine wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from alerts.store import open_store
from core.settings import Settings
from dashboard import alertview
from dashboard.app import create_app
from dashboard.pages import alert as alert_page
from tests.alerts.test_inhibit import Rig, muted_in_outage
from tests.dashboard.test_dash_api import dash_settings  # noqa: F401  (the fixture)


def dumped(components: Any) -> str:
    return orjson.dumps(components, default=lambda c: c.to_plotly_json()).decode()


def test_a_muted_alert_links_to_its_cause(tmp_path: Path, dash_settings: Settings) -> None:  # noqa: F811
    rig = Rig(tmp_path, open_store(dash_settings))
    rig.run(60)
    outage, w0, w1 = muted_in_outage(rig)
    rig.store.close()
    app = create_app(dash_settings)
    dctx = app.server.config["SC_DASHBOARD"]
    try:
        client = app.server.test_client()
        rows = {a["alert_id"]: a for a in client.get("/api/alerts?state=active").json}
        got = rows[w0.alert_id]["inhibited_by"]
        assert got["alert_id"] == outage.alert_id and got["words"] == "因「疑似停电」抑制"
        assert got["api"] == f"/api/alerts/{outage.alert_id}" and got["title"] == "疑似停电"
        assert "inhibited_by" not in rows[w1.alert_id] and "inhibited_by" not in rows[outage.alert_id]
        one = client.get(f"/api/alerts/{w0.alert_id}").json
        assert one["inhibited_by"]["alert_id"] == outage.alert_id
        assert [s["label"] for s in one["timeline"] if s["event"] == "inhibited"] == ["已抑制"]

        base, _, live = dctx.state.view()
        html = dumped(alertview.alert_list(live, base, console=True))
        link = dumped(alertview.inhibited_link(outage))
        assert f'"href":"/alerts/{outage.alert_id}"' in link and "因「疑似停电」抑制" in link
        assert html.count(link) == 1  # only W0's item carries it
        page = dumped(alert_page.header(dctx, w0))
        assert link in page and "抑制" in page
        assert link not in dumped(alert_page.header(dctx, w1))
    finally:
        dctx.close()
