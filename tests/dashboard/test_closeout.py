"""Dispatch, the field page, archive and the report on the dashboard's server: the API's answers
to good and bad requests, links and uploads refused with a clear message and nothing changed,
the report page with its locally served plotly.js, and the sign-in gate around them."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image

from alerts.dispatch import CAUSES, link_secret, photo_dir, sign_link
from alerts.store import AlertStore
from alerts.timeline import Event
from core.settings import Settings
from core.staff import Accounts, accounts_path
from dashboard import app as dashboard_app
from tests.alerts.test_dispatch import jpeg, png
from tests.conftest import RunningAlerts, make_settings
from tests.dashboard.test_dash_api import CLOSED, make_alert

PHOTO_MAX = 150_000


def settings_for(tmp_path: Path, **over: Any) -> Settings:
    return make_settings(tmp_path / "var", mqtt_url=f"mqtt://{CLOSED}", influx_url=f"http://{CLOSED}",
                         dispatch_photo_max_bytes=PHOTO_MAX, **over)


_RUNNING: list[RunningAlerts] = []


def create_app(s: Settings) -> Any:
    """The dashboard, and the alert service its actions are commands to (no broker here)."""
    r = RunningAlerts(s, broker=False)
    r.__enter__()
    _RUNNING.append(r)
    return dashboard_app.create_app(s)


@pytest.fixture(autouse=True)
def _stop_alert_services() -> Iterator[None]:
    yield
    while _RUNNING:
        _RUNNING.pop().__exit__()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FlaskClient, AlertStore, Settings]]:
    s = settings_for(tmp_path)
    app = create_app(s)
    dctx = app.server.config["SC_DASHBOARD"]
    yield app.server.test_client(), dctx.store, s
    dctx.close()


def new_alert(store: AlertStore, **kw: Any) -> str:
    a = make_alert(**kw)
    store.insert(a, a.alert_id)
    return a.alert_id


def dispatched(client: FlaskClient, alert_id: str, **body: Any) -> tuple[dict, str]:
    r = client.post(f"/api/alerts/{alert_id}/dispatch", json={"team": "gas", "deadline_min": 30, "by": "张三",
                                                              **body})
    assert r.status_code == 201, r.json
    return r.json, r.json["link"].split("/d/")[1]


def error_text(page: str) -> str:
    m = re.search(r'id="error">([^<]*)<', page)
    return m.group(1) if m else ""


def test_dispatch_api_answers_and_refusals(served: tuple) -> None:
    client, store, _s = served
    aid = new_alert(store)
    body, _token = dispatched(client, aid, member="gas-wang", note="燃气味重")
    assert body["assignee"] == "王师傅" and body["state"] == "sent" and body["created_by"] == "张三"
    teams = client.get("/api/dispatch/teams").json
    assert teams["error"] is None and {t["type"] for t in teams["teams"]} >= {"燃气公司", "物业", "派出所"}
    assert CAUSES[0] in client.get("/api/dispatch/options").json["causes"]
    for payload, status, words in [
        ({"team": "fire", "by": "张三"}, 400, "unknown team"),
        ({"team": "gas", "member": "nobody", "by": "张三"}, 400, "no member"),
        ({"team": "gas", "deadline": "tomorrow", "by": "张三"}, 400, "ISO-8601"),
        ({"team": "gas", "deadline_min": True, "by": "张三"}, 400, "deadline_min"),
        ({"team": "gas", "deadline_min": 0, "by": "张三"}, 400, "deadline_min"),
        ({"team": "gas", "deadline": "2020-01-01T00:00:00Z", "by": "张三"}, 400, "past"),
        ({"team": "gas"}, 400, '"by"'),
        ({"team": "pm-yanhu", "by": "张三"}, 400, "does not serve"),
    ]:
        r = client.post(f"/api/alerts/{aid}/dispatch", json=payload)
        assert r.status_code == status and words in r.json["error"], (payload, r.json)
    r = client.post(f"/api/alerts/{aid}/dispatch", data="[1,2", content_type="application/json")
    assert r.status_code == 400
    assert client.post("/api/alerts/a-none/dispatch", json={"team": "gas", "by": "x"}).status_code == 404
    listed = client.get(f"/api/alerts/{aid}/dispatches").json
    assert len(listed) == 1  # the refused ones left nothing
    events = [st["event"] for st in client.get(f"/api/alerts/{aid}").json["timeline"]]
    assert events == ["raised", "dispatched", "notified"]
    opened = client.get("/api/dispatches?community=lanshanjun").json
    assert [d["dispatch_id"] for d in opened] == [body["dispatch_id"]] and opened[0]["overdue"] is False
    assert client.get("/api/dispatches?community=yanhu").json == []


def test_the_api_needs_the_bearer_token_when_one_is_set(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, api_token="s3cret-token"))
    dctx = app.server.config["SC_DASHBOARD"]
    try:
        c = app.server.test_client()
        aid = new_alert(dctx.store)
        for method, url in (("post", f"/api/alerts/{aid}/dispatch"), ("get", "/api/archive/pending"),
                            ("get", "/api/report?month=2026-11"), ("post", f"/api/alerts/{aid}/archive")):
            assert getattr(c, method)(url, json={"team": "gas", "by": "x"}).status_code == 401, url
        ok = c.post(f"/api/alerts/{aid}/dispatch", json={"team": "gas", "by": "x"},
                    headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 201
    finally:
        dctx.close()


def test_field_page_walk_and_the_photo_back_through_the_api(served: tuple) -> None:
    client, store, _s = served
    aid = new_alert(store)
    body, token = dispatched(client, aid)
    page = client.get(f"/d/{token}")
    assert page.status_code == 200 and 'id="accept"' in page.text and "燃气浓度" in page.text
    r = client.post(f"/d/{token}/accept", data={"name": "王师傅"})
    assert r.status_code == 303 and r.headers["Location"].endswith("?ok=accepted")
    assert 'id="arrive"' in client.get(f"/d/{token}").text
    assert client.post(f"/d/{token}/arrive").status_code == 303
    photo = jpeg(120, 90)
    r = client.post(f"/d/{token}/feedback", content_type="multipart/form-data", data={
        "cause": CAUSES[1], "action": "关阀/停气", "text": "软管脱落",
        "photo": [(io.BytesIO(photo), "IMG_0001.HEIC"), (io.BytesIO(b""), "")]})  # judged by content, not name
    assert r.status_code == 303, error_text(r.text)
    done = client.get(f"/d/{token}")
    assert 'id="done"' in done.text and CAUSES[1] in done.text
    got = client.get(f"/api/dispatches/{body['dispatch_id']}/photos/1")
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(got.data)) as im:  # kept re-encoded (no metadata), the same picture
        assert im.format == "JPEG" and im.size == (120, 90)
    assert client.get(f"/d/{token}/photos/1").data == got.data  # the link's holder sees it too
    assert client.get(f"/api/dispatches/{body['dispatch_id']}/photos/2").status_code == 404
    events = [st["event"] for st in client.get(f"/api/alerts/{aid}").json["timeline"]]
    assert events == ["raised", "dispatched", "notified", "accepted", "arrived", "feedback"]


def test_forged_expired_and_other_alert_links_are_refused(tmp_path: Path) -> None:
    s = settings_for(tmp_path, dispatch_link_ttl_s=1)
    app = create_app(s)
    dctx = app.server.config["SC_DASHBOARD"]
    try:
        c = app.server.test_client()
        aid, other = new_alert(dctx.store), new_alert(dctx.store, community="yanhu")
        body, token = dispatched(c, aid)
        secret = link_secret(s.data_path)
        cases = {
            "forged": (token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), 403, "无效"),
            "other alert": (sign_link(secret, other, body["dispatch_id"]), 403, "不符"),
            "no such dispatch": (sign_link(secret, aid, "d-000000000000"), 403, "不符"),
        }
        for name, (tok, status, words) in cases.items():
            for method, url in (("get", f"/d/{tok}"), ("post", f"/d/{tok}/accept"), ("post", f"/d/{tok}/arrive")):
                r = getattr(c, method)(url)
                assert r.status_code == status and words in error_text(r.text), (name, url)
        time.sleep(2.1)
        for method, url in (("get", f"/d/{token}"), ("post", f"/d/{token}/accept")):
            r = getattr(c, method)(url)
            assert r.status_code == 410 and "过期" in error_text(r.text)
        d = c.get(f"/api/alerts/{aid}/dispatches").json[0]
        assert d["state"] == "sent" and d["accepted_at"] is None
        assert [st["event"] for st in c.get(f"/api/alerts/{aid}").json["timeline"]] == [
            "raised", "dispatched", "notified"]
    finally:
        dctx.close()


@pytest.mark.parametrize("case", ["oversize", "body_too_big", "not_an_image", "pdf_named_jpg"])
def test_bad_uploads_are_refused_with_a_message_and_change_nothing(served: tuple, case: str) -> None:
    client, store, s = served
    aid = new_alert(store)
    body, token = dispatched(client, aid)
    client.post(f"/d/{token}/accept")
    client.post(f"/d/{token}/arrive")
    before = store.timeline(aid)
    big = jpeg(800, 800, quality=95, noise=True)
    assert len(big) > PHOTO_MAX
    files = {
        "oversize": [(io.BytesIO(big), "big.jpg")],
        "body_too_big": [(io.BytesIO(b"\xff\xd8\xff" + b"0" * (2 * PHOTO_MAX)), f"p{i}.jpg") for i in range(3)],
        "not_an_image": [(io.BytesIO(b"#!/bin/sh\necho hi\n"), "photo.png")],
        "pdf_named_jpg": [(io.BytesIO(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), "scan.jpg"), (io.BytesIO(png()), "ok.png")],
    }[case]
    r = client.post(f"/d/{token}/feedback", content_type="multipart/form-data",
                    data={"cause": CAUSES[0], "action": "关阀/停气", "text": "x", "photo": files})
    assert r.status_code in (413, 415), r.status_code
    msg = error_text(r.text)
    assert ("太大" in msg or "过大" in msg) if case in ("oversize", "body_too_big") else "不是图片" in msg
    assert 'id="submit-feedback"' in r.text  # the form is still there to try again
    if case != "body_too_big":  # ... with what was typed (a body too big to read has nothing to keep)
        assert f'<option value="{CAUSES[0]}" selected>' in r.text and ">x</textarea>" in r.text
    assert store.timeline(aid) == before
    d = client.get(f"/api/alerts/{aid}/dispatches").json[0]
    assert d["state"] == "arrived" and d["photos"] == [] and d["cause"] is None
    assert not photo_dir(s.data_path, body["dispatch_id"]).exists()


def test_archive_api_and_pending_list(served: tuple) -> None:
    client, store, _s = served
    red, orange, yellow = new_alert(store), new_alert(store, severity="orange"), new_alert(store, severity="yellow")
    for aid in (red, orange, yellow):
        store.resolve(aid, "2026-11-25T04:00:00.000Z", by=None)  # cleared by itself
    pend = client.get("/api/archive/pending").json
    assert pend["count"] == 2 and {a["alert_id"] for a in pend["alerts"]} == {red, orange}
    assert client.post(f"/api/alerts/{red}/archive", json={"by": "李四", "cause": "乱写"}).status_code == 400
    r = client.post(f"/api/alerts/{red}/archive", json={"by": "李四", "cause": CAUSES[5], "note": "误报，已校准"})
    assert r.status_code == 200 and r.json["archived_by"] == "李四"
    again = client.post(f"/api/alerts/{red}/archive", json={"by": "王五", "cause": CAUSES[5]})
    assert again.status_code == 409 and "李四" in again.json["error"]
    assert [a["alert_id"] for a in client.get("/api/archive/pending").json["alerts"]] == [orange]
    steps = client.get(f"/api/alerts/{red}").json["timeline"]
    assert steps[-1]["event"] == Event.ARCHIVED and steps[-1]["by"] == "李四" and steps[-1]["label"] == "已归档"
    # an archived alert takes no new dispatch
    assert client.post(f"/api/alerts/{red}/dispatch", json={"team": "gas", "by": "张三"}).status_code == 409


def test_report_page_csv_and_local_plotly(served: tuple) -> None:
    client, store, _s = served
    new_alert(store, started="2026-11-10T03:00:00.000Z")
    new_alert(store, started="2026-11-12T03:00:00.000Z", community="yanhu")
    page = client.get("/report?month=2026-11")
    assert page.status_code == 200
    srcs = re.findall(r'<script[^>]*src="([^"]+)"', page.text)
    assert srcs == ["/report/plotly.min.js"]  # no CDN
    assert page.text.count("Plotly.newPlot") == 4 and "蓝山郡社区" in page.text
    assert 'href="/report.csv?month=2026-11"' in page.text  # the CSV of what is shown
    # in the navigation of every page, the month chosen shown in words, counts in whole numbers
    assert 'href="/report"' in page.text and '<option value="2026-11" selected>2026年11月</option>' in page.text
    assert page.text.count('"tickformat":"d"') >= 3 and '"dtick":1' in page.text
    this_month = client.get("/report").text
    assert re.search(r'<option value="\d{4}-\d{2}" selected>\d{4}年\d{2}月</option>', this_month)
    js = client.get("/report/plotly.min.js")
    assert js.status_code == 200 and b"plotly" in js.data[:2000].lower() and len(js.data) > 1_000_000
    csv_ = client.get("/report.csv?month=2026-11&community=yanhu")
    assert csv_.status_code == 200 and csv_.mimetype == "text/csv"
    assert "alerts_total,yanhu,,艳湖社区,1" in csv_.text
    data = client.get("/api/report?from=2026-11-01&to=2026-11-11").json
    assert data["communities"]["*"]["total"] == 1
    assert client.get("/report?month=2026-13").status_code == 400
    assert client.get("/api/report?community=mars").status_code == 400


def test_the_report_needs_sign_in_and_the_field_page_does_not(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    Accounts(accounts_path(s.data_path)).add("zhang", "张三", "correct horse")
    app = create_app(s)
    dctx = app.server.config["SC_DASHBOARD"]
    try:
        c = app.server.test_client()
        aid = new_alert(dctx.store)
        r = c.post(f"/api/alerts/{aid}/dispatch", json={"team": "gas", "deadline_min": 30, "by": "张三"})
        assert r.status_code == 401 and dctx.store.timeline(aid)[-1].event == Event.RAISED  # no anonymous act
        assert c.get("/report?month=2026-11").status_code == 302
        assert c.get("/report.csv").status_code == 302
        from tests.dashboard.test_dash_login import sign_in

        assert sign_in(c, "zhang", "correct horse").status_code == 302
        _body, token = dispatched(c, aid)
        phone = app.server.test_client()  # no cookie: the signed link is the phone's only credential
        assert phone.get(f"/d/{token}").status_code == 200
        assert c.get("/report?month=2026-11").status_code == 200
        # signed in, the operator's own name signs the dispatch, whatever the body says
        r = c.post(f"/api/alerts/{aid}/dispatch", json={"team": "police", "by": "冒名"})
        assert r.status_code == 201 and r.json["created_by"] == "张三"
    finally:
        dctx.close()


def test_a_bad_teams_file_is_reported_by_the_api_and_the_cli_not_fatal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "teams.yaml"
    bad.write_text("teams:\n  - id: gas\n    name: 燃气\n    type: 消防队\n"
                   "    members: [{id: a, name: b, phone: '1'}]\n", encoding="utf-8")
    s = settings_for(tmp_path, dispatch_teams_file=str(bad))
    app = create_app(s)  # the dashboard still starts
    dctx = app.server.config["SC_DASHBOARD"]
    try:
        c = app.server.test_client()
        aid = new_alert(dctx.store)
        teams = c.get("/api/dispatch/teams").json
        assert teams["teams"] == [] and teams["error"].startswith(f"{bad}:4: ")
        r = c.post(f"/api/alerts/{aid}/dispatch", json={"team": "gas", "by": "张三"})
        assert r.status_code == 503 and f"{bad}:4:" in r.json["error"]
    finally:
        dctx.close()
    from smartcommunity.cli import main

    for k in [k for k in __import__("os").environ if k.startswith("SC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SC_DATA_DIR", str(s.data_path))
    monkeypatch.setenv("SC_DISPATCH_TEAMS_FILE", str(bad))
    assert main(["dispatch", aid, "--team", "gas", "--by", "张三"]) == 2
    assert f"{bad}:4: team 'gas': type '消防队'" in capsys.readouterr().err
    # The file put right: the next dispatch goes through (the alert service reads it anew), no restart.
    bad.write_text(Path(dashboard_app.__file__).parents[1].joinpath("alerts", "teams.yaml").read_text("utf-8"),
                   encoding="utf-8")
    assert main(["dispatch", aid, "--team", "gas", "--by", "张三"]) == 0
    assert "/d/" in capsys.readouterr().out


def test_an_operator_takes_a_dispatch_back_and_its_link_then_does_nothing(served: tuple) -> None:
    client, store, _s = served
    aid = new_alert(store)
    body, token = dispatched(client, aid)
    r = client.post(f"/api/dispatches/{body['dispatch_id']}/cancel", json={"by": "张三", "note": "改派物业"})
    assert r.status_code == 200 and r.json["state"] == "cancelled"
    page = client.get(f"/d/{token}")
    assert page.status_code == 200 and 'id="cancelled"' in page.text and "<button" not in page.text
    refused = client.post(f"/d/{token}/accept")
    assert refused.status_code == 409 and "已撤回" in error_text(refused.text)
    again = client.post(f"/api/dispatches/{body['dispatch_id']}/cancel", json={"by": "张三"})
    assert again.status_code == 409
    assert client.post("/api/dispatches/d-000000000000/cancel", json={"by": "张三"}).status_code == 404
    assert client.get("/api/dispatches").json == []
    steps = [(st["event"], st["by"], st["note"]) for st in client.get(f"/api/alerts/{aid}").json["timeline"]]
    assert steps[-1] == ("dispatch_cancelled", "张三", "改派物业")
    assert len(steps) == 4  # raised, dispatched, notified, cancelled: the refused presses left nothing
