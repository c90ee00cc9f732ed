"""Scoped staff on the dashboard: every route of the app (the Flask url_map, every Dash page of the
pages registry and every server callback those pages wire up), read as a community's grid worker and
as a gas company, shows nothing out of their scope; /api lists are filtered for a session and for a
personal token alike (the token acts with the account's scope of the moment); an alert, device or
compound out of scope answers 404 as a page and through /api, and actions on it are refused."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dash
import orjson
import pytest
from flask import g
from flask.testing import FlaskClient

from alerts.inbox import InboxStore, Received, inbox_path
from alerts.report import ALL_LABEL
from alerts.store import open_store
from core.contract import Alert, Device
from core.registry import ensure_registry, load_registry
from core.staff import Accounts, Scope, accounts_path
from core.timebase import iso
from dashboard.app import create_app
from dashboard.login import User
from dashboard.scope import scope_words
from dashboard.sessions import SessionStore, sessions_path
from tests.conftest import RunningAlerts, make_settings
from tests.dashboard.pagehelp import ROUTER
from tests.dashboard.test_dash_login import sign_in

CLOSED = "127.0.0.1:9"  # nothing listens: InfluxDB and the broker fail fast
PASSWORD = "scoped staff pw"
DEVICE_ID = re.compile(r"\b[A-Z]-\d{6}\b")
ALERT_ID = re.compile(r"\bsa-[0-9a-f]{12}\b")
# Routes that carry no alert, device or place of anyone's (files, fonts, the basemap), that change who
# is signed in (/display/<token>, a display link), or whose credential is a field link (/d/...).
NOT_DATA = ("/static/", "/assets/", "/_dash-component-suites/", "/_favicon.ico", "/_reload-hash", "/basemap/",
            "/map/font/", "/map/glyphs/", "/report/plotly.min.js", "/display/", "/d/", "/logout")
PAGES_CATCH_ALL = "/<path:path>"  # Dash Pages: walked through the pages registry below
FILL = {"dispatch_id": "nodispatch", "n": "1", "token": "notoken", "_rest": "nothing"}


@dataclass
class World:
    client_of: dict[str, FlaskClient]
    alerts: list[Alert]
    devices: dict[str, Device]
    compounds: dict[str, tuple[str, str]]  # compound id -> (name, community)
    app: Any
    scopes: dict[str, Scope] = field(default_factory=dict)

    def alert_in(self, who: str, a: Alert) -> bool:
        return self.scopes[who].allows(a.community, a.kind)

    def out_of_scope(self, who: str) -> tuple[set[str], set[str], list[str]]:
        """(device ids, alert ids, compound names) the person must never be shown."""
        s = self.scopes[who]
        devs = {d for d, dev in self.devices.items() if not s.allows(dev.community, dev.kind)}
        alerts = {a.alert_id for a in self.alerts if not s.allows(a.community, a.kind)}
        names = [n for n, c in self.compounds.values() if not s.community(c)]
        return devs, alerts, names


def _alert(dev: Device, n: int) -> Alert:
    at = iso(time.time() - 600 + n)
    return Alert(alert_id=f"sa-{uuid.uuid4().hex[:12]}", rule="gas_lel_high" if dev.kind == "gas" else "device_silent",
                 severity="red" if dev.kind == "gas" else "orange", state="active", community=dev.community,
                 compound_id=dev.compound_id, device_id=dev.device_id, kind=dev.kind, metric=None, value=None,
                 threshold=None, lon=dev.lon, lat=dev.lat, started_at=at, updated_at=at,
                 message=f"测试告警 {dev.device_id}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("scope") / "var", mqtt_url=f"mqtt://{CLOSED}",
                             influx_url=f"http://{CLOSED}", registry_poll_s=0.2, demo_inbox_port=9)
    reg = load_registry(ensure_registry(settings))
    devices = dict(reg.items())
    # One open alert per community and kind (gas, power), on a real device of the registry.
    picked: dict[tuple[str, str], Device] = {}
    for dev in devices.values():
        if dev.kind in ("gas", "power"):
            picked.setdefault((dev.community, dev.kind), dev)
    store = open_store(settings)
    alerts = [_alert(dev, i) for i, dev in enumerate(picked.values())]
    for a in alerts:
        store.insert(a, f"device:{a.device_id}")
    store.close()
    # What the demo's receiver got: a group message and an SMS about each alert (the inbox page).
    inbox = InboxStore(inbox_path(settings.data_path))
    inbox.add([Received(ch, to, name, a.message, f"{a.message} ({a.device_id})", False, alert_id=a.alert_id)
               for a in alerts for ch, to, name in (("wecom", "group-key", ""), ("sms", "13800000000", "王"))])
    inbox.close()
    compounds: dict[str, tuple[str, str]] = {}
    doc = orjson.loads((Path(__file__).resolve().parents[2] / "geodata/data/compounds.geojson").read_bytes())
    for f in doc["features"]:
        p = f["properties"]
        compounds[p["compound_id"]] = (p["name"], p["community"])
    accounts = Accounts(accounts_path(settings.data_path))
    scopes = {"grid": Scope.of(["yanling"]), "gasco": Scope.of(kinds=["gas"]), "duty": Scope()}
    for who, scope in scopes.items():
        accounts.add(who, who, PASSWORD)
        accounts.set_scope(who, scope)
    with RunningAlerts(settings, broker=False):
        app = create_app(settings, live_mqtt=False)
        clients = {}
        for who in scopes:
            c = app.server.test_client()
            assert sign_in(c, who, PASSWORD).status_code == 302
            clients[who] = c
        yield World(clients, alerts, devices, compounds, app, scopes)
        app.server.config["SC_DASHBOARD"].close()


def _text(resp: Any) -> str:
    """The body as a person's browser gets it, JSON re-encoded without \\u escapes."""
    body = resp.get_data(as_text=True)
    if resp.mimetype == "application/json" and body.strip():
        try:
            return orjson.dumps(orjson.loads(body)).decode()
        except orjson.JSONDecodeError:
            return body
    return body


def _leaks(w: World, who: str, body: str, asked: str = "") -> list[str]:
    """What the body shows out of the person's scope (an id the request itself named, echoed in a
    404's "no alert X", is not shown to them: they sent it)."""
    devs, alerts, names = w.out_of_scope(who)
    for named in DEVICE_ID.findall(asked) + ALERT_ID.findall(asked):
        body = body.replace(named, "")
    return sorted((set(DEVICE_ID.findall(body)) & devs) | (set(ALERT_ID.findall(body)) & alerts)
                  | {n for n in names if n in body})


def _csrf(c: FlaskClient) -> dict[str, str]:
    cookie = c.get_cookie("_csrf_token")
    return {"X-CSRFToken": cookie.value if cookie else ""}


def page_layout(c: FlaskClient, path: str) -> Any:
    """A page's layout as the browser of a signed-in person gets it: the pages router callback."""
    body = {"output": ROUTER,
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}
    r = c.post("/_dash-update-component", json=body, headers=_csrf(c))
    assert r.status_code == 200, r.data[:300]
    return r.get_json()["response"]["_pages_content"]["children"]


def _components(node: Any, out: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every component of a layout with a (string) id: its props."""
    if isinstance(node, dict):
        props = node.get("props")
        if "type" in node and isinstance(props, dict) and isinstance(props.get("id"), str):
            out[props["id"]] = props
        for v in node.values():
            _components(v, out)
    elif isinstance(node, list):
        for v in node:
            _components(v, out)
    return out


def _callbacks_of(app: Any, props: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The request bodies of every server callback whose inputs and states are all on the page, with
    the values the page holds (as the browser sends them on the page's first tick)."""
    for key, cb in app.callback_map.items():
        if "callback" not in cb:
            continue
        deps = cb["inputs"] + cb.get("state", [])
        if any(not isinstance(d["id"], str) or d["id"].startswith("{") or d["id"] not in props for d in deps):
            continue
        outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]}
                for o in (key.strip(".").split("...") if key.startswith("..") else [key])]
        if any(o["id"].startswith("{") for o in outs):
            continue

        def val(d: dict[str, Any]) -> dict[str, Any]:
            return {**d, "value": props[d["id"]].get(d["property"])}

        yield {"output": key, "outputs": outs if key.startswith("..") else outs[0],
               "inputs": [val(d) for d in cb["inputs"]], "state": [val(d) for d in cb.get("state", [])],
               "changedPropIds": [f"{d['id']}.{d['property']}" for d in cb["inputs"][:1]]}


def _urls(w: World, who: str) -> Iterator[tuple[str, bool]]:
    """(URL, in scope?) of every GET route of the app, each id-taking route once with an id in scope and
    once with one out of it."""
    inside = next(a for a in w.alerts if w.alert_in(who, a))
    outside = next(a for a in w.alerts if not w.alert_in(who, a))
    for rule in w.app.server.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(NOT_DATA) or rule.rule == PAGES_CATCH_ALL:
            continue
        unknown = set(rule.arguments) - {"alert_id", *FILL}
        assert not unknown, f"{rule.rule}: teach this test how to fill {unknown} (in scope and out of it)"
        fill = {k: FILL[k] for k in rule.arguments if k in FILL}
        if "alert_id" in rule.arguments:
            for a, ok in ((inside, True), (outside, False)):
                yield w.app.server.url_map.bind("x").build(rule.endpoint, {**fill, "alert_id": a.alert_id}), ok
        else:
            yield w.app.server.url_map.bind("x").build(rule.endpoint, fill), True
    for c in ("yanling", "lanshanjun"):  # the filters a person may add, out of scope too
        yield f"/api/alerts?community={c}", w.scopes[who].community(c)
        yield f"/report?community={c}", w.scopes[who].community(c)
        yield f"/api/report?community={c}", w.scopes[who].community(c)


def _pages(w: World, who: str) -> Iterator[tuple[str, bool]]:
    """(path, in scope?) of every Dash page: those about one thing with one in scope and one out of it."""
    s = w.scopes[who]
    inside = next(a for a in w.alerts if w.alert_in(who, a))
    outside = next(a for a in w.alerts if not w.alert_in(who, a))
    dev_out = next(d for d in w.devices.values() if not s.allows(d.community, d.kind))
    comp_in = next(c for c, (_n, comm) in w.compounds.items() if s.community(comm))
    comp_out = next((c for c, (_n, comm) in w.compounds.items() if not s.community(comm)), None)
    values = {"alert_id": [(inside.alert_id, True), (outside.alert_id, False)],
              "device_id": [(inside.device_id, True), (dev_out.device_id, False)],
              "compound_id": [(comp_in, True)] + ([(comp_out, False)] if comp_out else [])}
    for page in dash.page_registry.values():
        template = page.get("path_template")
        if not template:
            yield page["path"], True
            continue
        (arg,) = re.findall(r"<(\w+)>", template)
        assert arg in values, f"{template}: teach this test an id of its thing in scope and out of it"
        for ident, ok in values[arg]:
            yield template.replace(f"<{arg}>", ident), ok


@pytest.mark.parametrize("who", ["grid", "gasco"])
def test_every_route_shows_only_the_scope(world: World, who: str) -> None:
    w, c = world, world.client_of[who]
    seen = ""
    for url, ok in _urls(w, who):
        r = c.get(url)
        if not ok and ("/api/alerts/" in url or url.startswith("/report") or "/api/report" in url):
            assert r.status_code == 404, (url, r.status_code)
        body = _text(r)
        assert not _leaks(w, who, body, url), (url, _leaks(w, who, body, url)[:5])
        seen += body
    shell = _components(c.get("/_dash-layout").get_json(), {})
    statuses: dict[str, int] = {}
    for path, ok in _pages(w, who):
        r = c.get(path)
        assert r.status_code == (200 if ok else 404), (path, r.status_code)
        layout = page_layout(c, path)
        body = orjson.dumps(layout).decode()
        assert not _leaks(w, who, body, path), (path, _leaks(w, who, body, path)[:5])
        seen += body
        where = {"_pages_location": {"pathname": path, "search": ""}, "nav": {"pathname": path}}
        for cb in _callbacks_of(w.app, {**shell, **_components(layout, {}), **where}):
            got = c.post("/_dash-update-component", json=cb, headers=_csrf(c))
            statuses[f"{path} {cb['output']}"] = got.status_code
            out = _text(got)
            assert not _leaks(w, who, out, path), (path, cb["output"], _leaks(w, who, out, path)[:5])
            seen += out
    assert statuses and all(s in (200, 204) for s in statuses.values()), \
        {k: v for k, v in statuses.items() if v not in (200, 204)}
    # What is in scope does show (so the scan above can see): its alerts, its devices on the map.
    mine = [a for a in w.alerts if w.alert_in(who, a)]
    assert mine and all(a.alert_id in seen for a in mine)
    assert any(d in seen for d in list(w.devices)[:400] if w.scopes[who].allows(w.devices[d].community,
                                                                               w.devices[d].kind))


def test_the_whole_street_for_an_account_without_scope(world: World) -> None:
    body = _text(world.client_of["duty"].get("/api/alerts"))
    assert {a.alert_id for a in world.alerts} <= set(ALERT_ID.findall(body))


def test_dispatch_teams_of_the_scope(world: World) -> None:
    def served(who: str) -> set[str]:
        got = world.client_of[who].get("/api/dispatch/teams").get_json()["teams"]
        return {c for t in got for c in t["communities"]}

    assert served("duty") > {"yanling"} and served("gasco") == served("duty")
    assert served("grid") == {"yanling"}  # street-wide teams, and the grid worker's own community's


def test_api_lists_are_filtered_for_sessions_and_tokens(world: World) -> None:
    w = world
    for who in ("grid", "gasco"):
        got = {a["alert_id"] for a in w.client_of[who].get("/api/alerts").get_json()}
        assert got == {a.alert_id for a in w.alerts if w.alert_in(who, a)}
    data = w.app.server.config["SC_DASHBOARD"].settings.data_path
    _, token = SessionStore(sessions_path(data)).new_token("gasco", "test")
    plain = w.app.server.test_client()
    listed = plain.get("/api/alerts", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert listed and {a["kind"] for a in listed} == {"gas"}
    power = next(a for a in w.alerts if a.kind == "power")
    assert plain.get(f"/api/alerts/{power.alert_id}", headers={"Authorization": f"Bearer {token}"}).status_code == 404
    # The token acts with the account's scope of each request: widen it, and it sees more at once.
    accounts = Accounts(accounts_path(data))
    accounts.set_scope("gasco", Scope.of(kinds=["gas", "power"]))
    try:
        listed = plain.get("/api/alerts", headers={"Authorization": f"Bearer {token}"}).get_json()
        assert {a["kind"] for a in listed} == {"gas", "power"}
    finally:
        accounts.set_scope("gasco", w.scopes["gasco"])


def test_actions_out_of_scope_are_refused(world: World) -> None:
    w = world
    c = w.client_of["grid"]
    outside = [a for a in w.alerts if not w.alert_in("grid", a)]
    inside = next(a for a in w.alerts if w.alert_in("grid", a) and a.kind == "power")
    body = {"note": "scope test"}
    for a in outside[:2]:
        for verb, doc in (("ack", body), ("resolve", body), ("archive", {"cause": "误报", **body}),
                          ("dispatch", {"team": "gas", **body})):
            r = c.post(f"/api/alerts/{a.alert_id}/{verb}", json=doc)
            assert r.status_code == 404, (verb, r.status_code, r.get_data(as_text=True)[:200])
    # Nothing happened to them; an alert in scope is acknowledged by the same person.
    duty = w.client_of["duty"]
    assert all(duty.get(f"/api/alerts/{a.alert_id}").get_json()["state"] == "active" for a in outside[:2])
    r = c.post(f"/api/alerts/{inside.alert_id}/ack", json=body)
    assert r.status_code == 200 and r.get_json()["state"] == "acknowledged"


def test_inbox_shows_only_messages_about_the_scope(world: World) -> None:
    w = world
    for who in ("grid", "gasco", "duty"):
        body = orjson.dumps(page_layout(w.client_of[who], "/inbox")).decode()
        assert set(ALERT_ID.findall(body)) == {a.alert_id for a in w.alerts if w.alert_in(who, a)}, who


def test_shelving_out_of_scope_is_refused(world: World) -> None:
    """A console action is a command through the Dashboard: a device or compound out of scope cannot
    be shelved (404, nothing sent), one in scope reaches the alert service."""
    w = world
    d = w.app.server.config["SC_DASHBOARD"]
    dev_out = next(x for x in w.devices.values() if x.community != "yanling")
    dev_in = next(x for x in w.devices.values() if x.community == "yanling" and x.kind == "power")
    comp_out = next(c for c, (_n, comm) in w.compounds.items() if comm != "yanling")
    args = {"reason": "检修", "seconds": 600}
    with w.app.server.test_request_context("/shelves"):
        g.sc_user = User("grid", "grid", "operator", "staff", w.scopes["grid"])
        for scope, target in (("device", dev_out.device_id), ("compound", comp_out), ("kind", "gas"),
                              ("rule", "gas_lel_high")):
            assert d.command("shelve", scope=scope, target=target, **args).status == 404, (scope, target)
        assert d.command("shelve", scope="device", target=dev_in.device_id, **args).status == 201
        assert [s["target"] for s in d.store.shelves()] == [dev_in.device_id]
    with w.app.server.test_request_context("/shelves"):  # a gas company does not see a power device's shelf
        g.sc_user = User("gasco", "gasco", "operator", "staff", w.scopes["gasco"])
        assert d.store.shelves() == [] and d.all_store.shelves() != []


def test_a_field_link_is_its_own_credential(world: World) -> None:
    """A dispatch out of a scoped person's scope: refused to them at the console, but its field link
    works in their phone's browser even while they are signed in there (the link is the credential)."""
    w = world
    d = w.app.server.config["SC_DASHBOARD"]
    a = next(x for x in w.alerts if x.community == "lanshanjun" and x.kind == "gas")
    r = w.client_of["duty"].post(f"/api/alerts/{a.alert_id}/dispatch", json={"team": "gas", "note": "scope"})
    assert r.status_code == 201, r.get_data(as_text=True)
    dispatch_id = r.get_json()["dispatch_id"]
    with w.app.server.test_request_context("/"):
        g.sc_user = User("grid", "grid", "operator", "staff", w.scopes["grid"])
        assert d.actions.send("dispatch_cancel", "grid", "console", dispatch_id=dispatch_id).status == 404
        assert d.actions.send("accept", "王师傅", "field", dispatch_id=dispatch_id).status == 200


def test_a_scoped_report_names_its_sum_for_the_scope(world: World) -> None:
    """The sum of a scoped person's report is theirs, not the street's, and is called so."""
    for who in ("grid", "gasco"):
        page = _text(world.client_of[who].get("/report"))
        assert f"{scope_words(world.scopes[who])} 合计" in page and ALL_LABEL not in page, who
    assert ALL_LABEL in _text(world.client_of["duty"].get("/report"))
