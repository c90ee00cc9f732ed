"""`/patrol`: 巡检打卡 on a phone (390×844) — the signed-in worker's patrol plans (those of the person
or team they are; all plans for someone who walks none) with where each stands: overdue by N rounds,
due this round by a time, or done, and which checkpoints are checked in this round (Beijing time,
alerts/patrols.py). The check-in form takes the phone's position (the browser's geolocation), up to 3
photos and what was found; it is a command to the alerts service, which refuses a check-in farther
from the checkpoint than its tolerance and opens a hazard (隐患) for a finding."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import Response, abort, send_file

from alerts.configfile import ConfigError, Watched
from alerts.dispatch import MAX_PHOTOS
from alerts.message import place_label
from alerts.patrols import PatrolBook, Plan, Plans, Status, load_plans, photos_dir, plans_path, status
from core.timebase import beijing, epoch, local_time
from dashboard import mapview
from dashboard.dispatchview import for_people
from dashboard.login import current_user
from dashboard.theme import PATROL_NAV, PATROL_WORDS

PATH = "/patrol"
ORDER = 60  # place in the page list
TITLE = "巡检打卡 · 车城路街道 综合一张图"
NAV_LABEL = PATROL_NAV
W = PATROL_WORDS
REFRESH_MS = 30_000
PHOTO_NAME = re.compile(r"^(r\d+-)?\d\.(jpg|png|webp)$")
PHOTO_OWNER = re.compile(r"^[kh]-[0-9a-f]{12}$")

def shown(settings: Any) -> bool:
    """Only where patrol plans are in force (SC_PATROLS_FILE)."""
    return bool(settings.patrols_file)


_watched: dict[str, Watched] = {}
_lock = threading.Lock()

# The phone's position when 定位并打卡 is pressed (the browser asks the person once).
GEO_JS = """function(n) {
  if (!n) { return window.dash_clientside.no_update; }
  return new Promise(function(resolve) {
    if (!navigator.geolocation) { resolve({error: %(none)s, n: n}); return; }
    navigator.geolocation.getCurrentPosition(
      function(p) { resolve({lon: p.coords.longitude, lat: p.coords.latitude, acc: p.coords.accuracy, n: n}); },
      function(e) { resolve({error: e.code === 1 ? %(denied)s : %(failed)s, n: n}); },
      {enableHighAccuracy: true, timeout: 15000, maximumAge: 0});
  });
}""" % {k: json.dumps(W[f"geo_{k}"], ensure_ascii=False) for k in ("none", "denied", "failed")}


def plans_in_force(settings: Any) -> Plans:
    """The plans of SC_PATROLS_FILE (none when unset), re-read when the file changes; a bad edit keeps
    the last good plans (the alerts service decides with the same)."""
    if not settings.patrols_file:
        return Plans({})
    key = str(plans_path(settings.patrols_file))
    with _lock:
        w = _watched.get(key)
        if w is None:
            try:
                w = _watched[key] = Watched(Path(key), lambda _p: load_plans(settings))
            except ConfigError:
                return Plans({})
        return w.current()  # type: ignore[no-any-return]


def statuses(d: Any, plans: Plans, now: float) -> list[Status]:
    rows = d.store.checkins(PatrolBook.since(plans, now)) if plans.plans else []
    got: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        got.setdefault(r["plan_id"], []).append((r["checkpoint"], epoch(r["at"])))
    return [status(p, got.get(p.plan_id, ()), now) for p in plans]


def mine(plans: Plans) -> tuple[Plans, str | None]:
    """The signed-in worker's plans (by roster person or team, id or name), or all when they walk none."""
    user = current_user()
    if user is not None:
        own = {k: p for k, p in plans.plans.items() if p.walked_by(user.username, user.name)}
        if own:
            return Plans(own, plans.source), str(user.name)
    return plans, None


def where(plan: Plan) -> str:
    return plan.segment or place_label(plan.community, plan.compound_id)


def state_line(st: Status) -> html.Div:
    if not st.started:
        return html.Div(W["not_started"].format(day=f"{st.plan.start:%m-%d}"), className="pt-state")
    if st.overdue:
        return html.Div(W["overdue"].format(n=st.missed), className="pt-state pt-late")
    if st.complete:
        return html.Div(W["done"], className="pt-state pt-ok")
    return html.Div(W["due"].format(due=f"{beijing(st.round_end):%m-%d %H:%M}"), className="pt-state pt-due")


def card(st: Status) -> html.Article:
    p = st.plan
    points = [html.Span(("✓ " if c.name in st.done else "○ ") + c.name,
                        className="pt-point" + (" on" if c.name in st.done else "")) for c in p.checkpoints]
    return html.Article(className="pt-card" + (" late" if st.overdue else ""), id=f"pt-{p.plan_id}", children=[
        html.Div(p.name, className="pt-name"),
        html.Div(where(p), className="pt-where"),
        html.Div(f"{W['who']}: {p.who_name} · {W['every']}: {p.every_words()}", className="pt-meta"),
        state_line(st),
        html.Div(points, className="pt-points"),
    ])


def plan_list(d: Any) -> tuple[list[Any], str, list[dict[str, str]]]:
    """(cards, heading, plan choices) for the signed-in worker."""
    plans, who = mine(plans_in_force(d.settings))
    if not plans.plans:
        return [html.Div(W["none"], className="pt-empty")], W["all"], []
    sts = sorted(statuses(d, plans, time.time()), key=lambda s: (-s.missed, s.complete, s.round_end))
    opts = [{"label": s.plan.name, "value": s.plan.plan_id} for s in sts]
    return [card(s) for s in sts], W["mine"].format(who=who) if who else W["all"], opts


def layout(**_kw: Any) -> html.Div:
    d = mapview.dctx()
    cards, heading, opts = plan_list(d)
    return html.Div(className="sub-page patrol-page", children=[
        html.H2(W["heading"]),
        html.Div(heading, id="patrol-heading", className="muted"),
        dcc.Interval(id="patrol-tick", interval=REFRESH_MS),
        html.Div(cards, id="patrol-list", className="pt-list"),
        html.Div(className="pt-form", children=[
            html.H3(W["form"]),
            html.Label(W["plan"], htmlFor="patrol-plan"),
            dcc.Dropdown(id="patrol-plan", options=opts, value=opts[0]["value"] if len(opts) == 1 else None,
                         placeholder=W["plan_hint"], searchable=False, clearable=False),
            html.Label(W["point"], htmlFor="patrol-point"),
            dcc.Dropdown(id="patrol-point", options=[], placeholder=W["point_hint"], searchable=False,
                         clearable=False),
            html.Label(W["findings"], htmlFor="patrol-findings"),
            dcc.Textarea(id="patrol-findings", maxLength=1000, placeholder=W["findings_hint"],
                         className="pt-text"),
            html.Label(W["days"], htmlFor="patrol-days"),
            dcc.Input(id="patrol-days", type="number", min=1, max=90, step=1, value=7, className="pt-days"),
            html.Label(W["photos"]),
            dcc.Upload(id="patrol-photos", multiple=True, accept="image/jpeg,image/png,image/webp",
                       children=html.Div(W["photo_pick"], className="pt-pick")),
            html.Div(id="patrol-photo-n", className="muted"),
            html.Button(W["go"], id="patrol-go", className="pt-go"),
            dcc.Store(id="patrol-pos"),
            html.Div(id="patrol-msg", className="pt-msg", role="status"),
        ]),
        dcc.Link(W["hazards_link"], href="/hazards", className="pt-link"),
    ])


def register(app: Dash, d: Any) -> None:
    @app.server.get("/patrol-photos/<what>/<owner>/<name>")
    def patrol_photo(what: str, owner: str, name: str) -> Response:
        if what not in ("checkins", "hazards") or not PHOTO_OWNER.match(owner) or not PHOTO_NAME.match(name):
            abort(404)
        p = photos_dir(d.settings.data_path, what, owner) / name
        if not p.is_file():
            abort(404)
        resp = send_file(p, max_age=0)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.callback(Output("patrol-point", "options"), Output("patrol-point", "value"), Input("patrol-plan", "value"))
    def _points(plan_id: str | None) -> tuple[list[dict[str, str]], str | None]:
        plan = plans_in_force(d.settings).get(plan_id or "")
        if plan is None:
            return [], None
        opts = [{"label": c.name, "value": c.name} for c in plan.checkpoints]
        return opts, opts[0]["value"] if len(opts) == 1 else None

    @app.callback(Output("patrol-photo-n", "children"), Input("patrol-photos", "contents"))
    def _photo_n(contents: list[str] | None) -> str:
        return W["photos_n"].format(n=len(contents)) if contents else ""

    app.clientside_callback(GEO_JS, Output("patrol-pos", "data"), Input("patrol-go", "n_clicks"),
                            prevent_initial_call=True)
    app.clientside_callback("function(n) { return n ? " + json.dumps(W["locating"], ensure_ascii=False)
                            + " : window.dash_clientside.no_update; }",
                            Output("patrol-msg", "children", allow_duplicate=True), Input("patrol-go", "n_clicks"),
                            prevent_initial_call=True)

    @app.callback(
        Output("patrol-msg", "children"),
        Output("patrol-list", "children"),
        Output("patrol-findings", "value"),
        Output("patrol-photos", "contents"),
        Input("patrol-pos", "data"),
        State("patrol-plan", "value"),
        State("patrol-point", "value"),
        State("patrol-findings", "value"),
        State("patrol-days", "value"),
        State("patrol-photos", "contents"),
        prevent_initial_call=True,
    )
    def _check_in(pos: dict[str, Any] | None, plan_id: str | None, point: str | None, findings: str | None,
                  days: Any, photos: list[str] | None) -> tuple[Any, Any, Any, Any]:
        if not pos:
            return no_update, no_update, no_update, no_update
        if pos.get("error"):
            return W["no_position"].format(why=pos["error"]), no_update, no_update, no_update
        if not plan_id or not point:
            return W["pick"], no_update, no_update, no_update
        raw = [p.split(",", 1)[1] if p.startswith("data:") else p for p in (photos or [])][:MAX_PHOTOS + 1]
        out = d.command("patrol_checkin", plan_id=plan_id, checkpoint=point, lon=pos.get("lon"), lat=pos.get("lat"),
                        accuracy_m=pos.get("acc"), findings=(findings or "").strip() or None,
                        deadline_days=int(days) if isinstance(days, int | float) else None, photos=raw or None)
        if not out.ok:
            return (html.Div(W["refused"].format(why=for_people(out.body.get("error"))), className="pt-err",
                             id="patrol-refused"), no_update, no_update, no_update)
        c, h = out.body["checkin"], out.body.get("hazard")
        plan = plans_in_force(d.settings).get(plan_id)
        lines = [html.Div(W["ok"].format(plan=plan.name if plan else plan_id, point=point, d=c["distance_m"],
                                         at=local_time(c["at"])), id="patrol-ok")]
        if h:
            lines.append(html.Div(W["hazard"].format(deadline=f"{beijing(epoch(h['deadline'])):%m-%d}"),
                                  id="patrol-hazard"))
        return html.Div(lines, className="pt-ok-box"), plan_list(d)[0], "", None

    @app.callback(Output("patrol-list", "children", allow_duplicate=True), Input("patrol-tick", "n_intervals"),
                  prevent_initial_call=True)
    def _refresh(_n: int | None) -> list[Any]:
        return plan_list(d)[0]
