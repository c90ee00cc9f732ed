"""The alert page's 归档 and 撤回 callbacks against the real alert service: refusals in words — the
device still in alarm (the confirm dialog names the reading; OK with a reason overrides), an open
dispatch — then archived once the dispatch is taken back. The engine writes the condition into the
same store the dashboard reads (as in test_guard_api.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from alerts.archive import archived
from alerts.dispatch import CAUSES
from alerts.engine import Engine
from alerts.rules import load_rules
from alerts.store import AlertStore
from core.contract import Alert, Device
from core.settings import Settings
from core.validation import Telemetry
from dashboard.app import create_app
from tests.conftest import RunningAlerts
from tests.dashboard.test_dash_api import dash_settings  # noqa: F401  (fixture)

GAS = Device("G-614", "gas", "yanhu", "YH-01", 10, 110.79, 32.65)
ARCHIVE_OUT = [{"id": "archive-msg", "property": "children"}, {"id": "archive-confirm", "property": "displayed"},
               {"id": "archive-confirm", "property": "message"}]


@pytest.fixture
def rig(dash_settings: Settings) -> Iterator[tuple[FlaskClient, AlertStore, Engine, list[Alert]]]:  # noqa: F811
    with RunningAlerts(dash_settings, broker=False):
        app = create_app(dash_settings)
        dctx = app.server.config["SC_DASHBOARD"]
        published: list[Alert] = []
        engine = Engine(load_rules(), dctx.store, published.append, holdoff_s=dash_settings.alert_holdoff_s,
                        update_min_s=0, watch_s=dash_settings.alerts_watch_s)
        yield app.server.test_client(), dctx.store, engine, published
        dctx.close()


def callback(client: FlaskClient, outputs: list[dict[str, str]], inputs: list[dict[str, Any]],
             state: list[dict[str, Any]], changed: str) -> dict[str, Any]:
    """One Dash callback as the browser sends it; {output id: {property: value}}."""
    first = f"..{outputs[0]['id']}.{outputs[0]['property']}..."  # the page's own key (a duplicate output is hashed)
    deps = client.get("/_dash-dependencies", base_url="http://127.0.0.1:8123/").json
    key = next(d["output"] for d in deps if d["output"].startswith(first))
    outputs = [dict(zip(("id", "property"), part.split(".", 1), strict=True)) for part in key.strip(".").split("...")]
    body = {"output": key, "outputs": outputs, "inputs": inputs, "state": state, "changedPropIds": [changed]}
    r = client.post("/_dash-update-component", json=body, base_url="http://127.0.0.1:8123/")
    assert r.status_code == 200, (body["output"], r.data[:400])
    return r.json["response"]  # type: ignore[no-any-return,index]


def archive_click(client: FlaskClient, aid: str, note: str, *, confirm: bool) -> dict[str, Any]:
    inputs = [{"id": "archive-btn", "property": "n_clicks", "value": 1},
              {"id": "archive-confirm", "property": "submit_n_clicks", "value": 1 if confirm else None}]
    state = [{"id": "alert-id", "property": "data", "value": aid},
             {"id": "archive-cause", "property": "value", "value": CAUSES[0]},
             {"id": "alert-note", "property": "value", "value": note}]
    return callback(client, ARCHIVE_OUT, inputs, state,
                    "archive-confirm.submit_n_clicks" if confirm else "archive-btn.n_clicks")


def test_archive_refusals_in_words_then_archived(rig) -> None:  # type: ignore[no-untyped-def]
    client, store, engine, published = rig
    engine.handle(Telemetry(GAS, int(time.time() * 1000), None, {"lel_pct": 62.0}))
    aid = published[-1].alert_id
    engine.tick()
    r = client.post(f"/api/alerts/{aid}/resolve", json={"by": "值班员张", "note": "已关总阀", "override": True})
    assert r.status_code == 200, r.json
    r = client.post(f"/api/alerts/{aid}/dispatch", json={"team": "gas", "deadline_min": 30, "by": "值班员张"})
    assert r.status_code == 201, r.json
    did = r.json["dispatch_id"]

    # Still in alarm: refused with the reading, and the dialog asks for an override with a reason.
    got = archive_click(client, aid, "", confirm=False)
    msg = got["archive-msg"]["children"]
    assert msg.startswith("未能归档") and "62.0 %LEL" in msg, msg
    assert got["archive-confirm"]["displayed"] is True and "62.0 %LEL" in got["archive-confirm"]["message"]
    assert "理由" in got["archive-confirm"]["message"]
    # OK without a reason: still refused, in words.
    got = archive_click(client, aid, "", confirm=True)
    assert got["archive-msg"]["children"] == "未能归档: 强制解除必须写明理由", got
    # With a reason the reading is overridden, but the gas team's dispatch is still open.
    got = archive_click(client, aid, "阀门已关，等待复测", confirm=True)
    msg = got["archive-msg"]["children"]
    assert "尚有未完成的派单" in msg and "十堰燃气公司张湾抢修队" in msg and not any(c.isascii() and c.isalpha()
                                                                            for c in msg), msg
    assert archived(store, aid) is None

    # 撤回 the dispatch from the page, then archive.
    got = callback(client, [{"id": "dispatch-msg", "property": "children"},
                            {"id": "alert-note", "property": "value"}],
                   [{"id": "dispatch-btn", "property": "n_clicks", "value": 0},
                    {"id": {"type": "dispatch-cancel", "index": did}, "property": "n_clicks", "value": 1}],
                   [{"id": "alert-id", "property": "data", "value": aid},
                    {"id": "dispatch-team", "property": "value", "value": "gas"},
                    {"id": "dispatch-member", "property": "value", "value": ""},
                    {"id": "dispatch-minutes", "property": "value", "value": 30},
                    {"id": "alert-note", "property": "value", "value": "误派"}],
                   f'{{"index":"{did}","type":"dispatch-cancel"}}.n_clicks')
    assert got["dispatch-msg"]["children"].startswith("已撤回派单"), got
    got = archive_click(client, aid, "阀门已关，等待复测", confirm=True)
    assert got["archive-msg"]["children"].startswith("已归档"), got
    done = archived(store, aid)
    assert done is not None and done.cause == CAUSES[0]
    step = store.timeline(aid)[-1]
    assert step.event == "archived" and step.data["override"] is True
