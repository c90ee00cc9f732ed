"""The close guard through the dashboard's /api (contract §4 "Closing while the danger is still
measured"): 409 with the live reading, an override with a reason recorded and counted, archive refused
while the device is in alarm. The engine writes the condition into the same store the API reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient

from alerts.dispatch import ACTIONS, CAUSES, DispatchBook, link_for
from alerts.engine import Engine
from alerts.report import Period, build_report
from alerts.rules import load_rules
from alerts.store import AlertStore
from alerts.teams import load_teams
from core.contract import ALERT_TOPIC_ROOT, Alert, Device
from core.influx import InfluxClient
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from core.timebase import beijing, iso
from core.validation import Telemetry
from dashboard.app import create_app
from tests.conftest import Collector, RunningAlerts, clear_retained_alerts, feed, wait_until

GAS = Device("G-613", "gas", "yanhu", "YH-01", 10, 110.79, 32.65)


class Rig:
    """The real alert service (on the real broker) and the dashboard whose actions are commands to it.
    Readings go into the service's own inbox, as its MQTT client puts them: validated against the
    registry and handled on its engine thread."""

    def __init__(self, settings: Settings, sub: Collector) -> None:
        self.settings = settings
        self.sub = sub
        self.gas = sorted((d for d in load_registry(ensure_registry(settings)).values()
                           if d.kind == "gas" and d.community == "yanhu"), key=lambda d: d.device_id)[0]

    def reading(self, lel: float) -> None:
        svc = self.svc
        n = svc.counters["received"]
        feed(svc, self.gas, {"lel_pct": lel})
        assert wait_until(lambda: svc.counters["received"] > n and svc.inbox.empty(), timeout=10)

    @property
    def published(self) -> list[Alert]:
        """What this test's service published (the broker is shared: others' copies are not ours)."""
        return [a for a in (Alert.from_json(d) for d in self.sub.json()) if self.svc.store.get(a.alert_id)]

    def last(self, pred: Callable[[Alert], bool] = lambda a: True) -> Alert:
        assert self.sub.wait_for(lambda ms: any(pred(a) for a in self.published), 30), self.published
        return [a for a in self.published if pred(a)][-1]


@pytest.fixture
def rig(settings: Settings, collector: Callable[[str], Collector]) -> Iterator[tuple[FlaskClient, AlertStore, Rig]]:
    clear_retained_alerts(settings)
    r = Rig(settings, collector(f"{ALERT_TOPIC_ROOT}/#"))
    with RunningAlerts(settings) as svc:
        r.svc = svc
        app = create_app(settings)
        dctx = app.server.config["SC_DASHBOARD"]
        yield app.server.test_client(), dctx.store, r
        dctx.close()


def test_resolve_refused_with_the_live_reading_then_override_recorded(rig) -> None:  # type: ignore[no-untyped-def]
    client, store, rig = rig
    rig.reading(62.0)
    aid = rig.last().alert_id

    r = client.post(f"/api/alerts/{aid}/resolve", json={"by": "值班员张", "note": "处置结束"})
    assert r.status_code == 409 and r.is_json
    assert r.json["value"] == 62.0 and r.json["at"] and "62.0 %LEL" in r.json["error"]
    assert store.get(aid).state == "active"  # type: ignore[union-attr]  # nothing changed
    assert [a.state for a in rig.published] == ["active"]  # nothing published but the raise

    for body in ({"by": "值班员张", "override": True}, {"by": "值班员张", "override": True, "note": " "}):
        r = client.post(f"/api/alerts/{aid}/resolve", json=body)
        assert r.status_code == 400 and store.get(aid).state == "active"  # type: ignore[union-attr]
    assert client.post(f"/api/alerts/{aid}/resolve", json={"by": "x", "note": "y", "override": "yes"}
                       ).status_code == 409  # only a JSON true overrides

    r = client.post(f"/api/alerts/{aid}/resolve",
                    json={"by": "值班员张", "note": "燃气公司已关总阀, 现场复测中", "override": True})
    assert r.status_code == 200 and r.json["state"] == "resolved" and r.json["resolved_by"] == "值班员张"
    assert rig.last(lambda a: a.state == "resolved").alert_id == aid  # published by the alert service
    step = client.get(f"/api/alerts/{aid}").json["timeline"][-1]
    assert step["event"] == "resolved" and step["by"] == "值班员张" and step["note"] == "燃气公司已关总阀, 现场复测中"
    assert step["data"]["override"] is True and step["data"]["value"] == 62.0

    rig.reading(62.0)  # re-rise within the watch: the same incident
    again = rig.last(lambda a: a.reopened == 1)
    assert again.alert_id == aid and again.state == "active"
    got = client.get(f"/api/alerts/{aid}").json
    assert got["state"] == "active" and got["reopened"] == 1 and got["timeline"][-1]["label"] == "复燃/重新告警"

    # The monthly report counts the override and the reopening for the community.
    now = time.time()
    month = beijing(now).strftime("%Y-%m")
    rep = build_report(store, Period.month(month), None, now=now)
    yanhu = rep.sections["yanhu"]
    assert yanhu.overrides == 1 and yanhu.reopened == 1


def test_archive_refused_while_the_device_is_in_alarm(rig) -> None:  # type: ignore[no-untyped-def]
    client, _, rig = rig
    rig.reading(40.0)
    aid = rig.last().alert_id
    assert client.post(f"/api/alerts/{aid}/resolve", json={"by": "张", "note": "关阀", "override": True}
                       ).status_code == 200
    r = client.post(f"/api/alerts/{aid}/archive", json={"by": "李四", "cause": CAUSES[0]})
    assert r.status_code == 409 and r.json["value"] == 40.0 and r.json["at"]
    assert client.get("/api/archive/pending").json["count"] == 1  # nothing archived
    r = client.post(f"/api/alerts/{aid}/archive", json={"by": "李四", "cause": CAUSES[0], "override": True,
                                                        "note": "现场复测 0 %LEL, 探头故障已换"})
    assert r.status_code == 200, r.json
    assert client.get(f"/api/alerts/{aid}").json["timeline"][-1]["data"]["override"] is True


def test_a_clear_reading_in_its_hold_off_is_refused_then_closes_by_itself(rig) -> None:  # type: ignore[no-untyped-def]
    client, _, rig = rig
    rig.reading(30.0)
    aid = rig.last().alert_id
    rig.reading(0.0)  # clear, but the hold-off (2 s here) has not run: not yet
    r = client.post(f"/api/alerts/{aid}/resolve", json={"by": "张", "note": "复测 0"})
    assert r.status_code == 409 and "恢复确认期" in r.json["error"] and r.json["value"] == 0.0
    # Once it has, the engine closes it itself: no person has to, nor override anything.
    done = rig.last(lambda a: a.state == "resolved")
    assert done.alert_id == aid and done.resolved_by is None
    assert "override" not in client.get(f"/api/alerts/{aid}").json["timeline"][-1]["data"]


def test_field_page_shows_the_reading_and_refuses_done_in_alarm_without_a_reason(rig) -> None:  # type: ignore[no-untyped-def]
    client, store, rig = rig
    rig.reading(62.0)
    aid = rig.last().alert_id
    settings = client.application.config["SC_DASHBOARD"].settings
    book = DispatchBook(store, settings)
    team = load_teams().get("gas")
    assert team is not None
    d = book.create(aid, team, None, iso(time.time() + 1800), "值班员张", None, time.time())
    path = "/d/" + link_for(settings, d).split("/d/")[1]

    page = client.get(path).get_data(as_text=True)
    assert 'id="live-reading"' in page and "62.0 %LEL" in page and "仍在报警" in page
    assert 'id="trend' in page  # the reading's trend from InfluxDB (none written here), drawn or said
    assert client.post(path + "/accept", data={"name": "王师傅"}).status_code == 303
    assert client.post(path + "/arrive").status_code == 303
    page = client.get(path).get_data(as_text=True)
    assert 'id="still-alarm"' in page and 'name="remeasure"' in page and 'name="reason"' in page

    form = {"cause": CAUSES[0], "action": ACTIONS[0], "text": "处置完毕"}
    for extra in ({}, {"remeasure": "0"}, {"reason": "已关阀"}, {"remeasure": "零", "reason": "已关阀"}):
        r = client.post(path + "/feedback", data={**form, **extra})
        assert r.status_code == 409, extra
        assert "设备仍在报警" in r.get_data(as_text=True) and "62.0 %LEL" in r.get_data(as_text=True)
        assert book.get(d.dispatch_id).state == "arrived"  # type: ignore[union-attr]  # nothing recorded
    r = client.post(path + "/feedback", data={**form, "remeasure": "3.5", "reason": "已关入户阀, 复测 3.5 %LEL"})
    assert r.status_code == 303
    step = store.timeline(aid)[-1]
    assert step.event == "feedback" and step.data["remeasure"] == 3.5 and step.data["live_value"] == 62.0
    assert step.data["reason"] == "已关入户阀, 复测 3.5 %LEL"


def test_field_page_draws_the_reading_since_the_alert_from_influxdb(settings: Settings, influx: InfluxClient) -> None:
    app = create_app(settings)
    dctx = app.server.config["SC_DASHBOARD"]
    try:  # an engine of the test's own raises the alert (what is tested is the field page's drawing)
        published: list[Alert] = []
        engine = Engine(load_rules(), dctx.store, published.append, holdoff_s=60, update_min_s=0)
        engine.handle(Telemetry(GAS, int(time.time() * 1000), None, {"lel_pct": 62.0}))
        aid = published[-1].alert_id
        t = int(time.time() * 1000)
        tags = "device_id=G-613,community=yanhu,kind=gas,compound_id=YH-01"
        influx.write("\n".join(f"gas,{tags} lel_pct={v} {t - 1000 * k}" for k, v in
                                enumerate((62.0, 58.0, 40.0, 12.0, 3.0))).encode())
        book = DispatchBook(dctx.store, settings)
        team = load_teams().get("gas")
        assert team is not None
        d = book.create(aid, team, None, iso(time.time() + 1800), "值班员张", None, time.time())
        page = app.server.test_client().get("/d/" + link_for(settings, d).split("/d/")[1]).get_data(as_text=True)
        assert 'id="trend"' in page and "<polyline" in page and "最高 62.0 %LEL" in page
        assert page.count(",") > 5 and "stroke-dasharray" in page  # five points and the threshold line
    finally:
        dctx.close()
