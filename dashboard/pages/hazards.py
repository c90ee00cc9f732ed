"""`/hazards`: 隐患整改 — the hazards patrol findings opened, each with its place, who found it when,
its rectification deadline (overdue when still open past it) and its photos, tracked to closure:
待整改 → 已整改 (with photos of the work) → 销号. Each change is a command to the alerts service
(alerts/patrols.py decides); a viewer sees and cannot act."""

from __future__ import annotations

import time
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from alerts.dispatch import MAX_PHOTOS
from alerts.message import place_label
from alerts.patrols import HAZARD_STATE_LABEL, HAZARD_STATES, hazard_overdue
from core.timebase import beijing, epoch, local_time
from dashboard import mapview
from dashboard.dispatchview import for_people
from dashboard.pages.patrol import plans_in_force
from dashboard.theme import HAZARD_WORDS, PATROL_WORDS

PATH = "/hazards"
ORDER = 65  # place in the page list
TITLE = "隐患整改 · 车城路街道 综合一张图"
W = HAZARD_WORDS
OVERDUE = "overdue"
REFRESH_MS = 30_000


def shown(settings: Any) -> bool:
    """Only where patrol plans are in force (SC_PATROLS_FILE)."""
    return bool(settings.patrols_file)


def choices() -> list[dict[str, str]]:
    return [{"label": W["all"], "value": ""}, *({"label": HAZARD_STATE_LABEL[s], "value": s} for s in HAZARD_STATES),
            {"label": W["overdue"], "value": OVERDUE}]


def hazards(d: Any, which: str | None) -> list[dict[str, Any]]:
    now = time.time()
    rows = d.store.hazards([which] if which in HAZARD_STATES else None)
    if which == OVERDUE:
        rows = [h for h in rows if hazard_overdue(h, now)]
    return rows


def photo_links(h: dict[str, Any]) -> list[Any]:
    out = []
    for i, p in enumerate(h.get("photos") or [], start=1):
        stage = W["found"] if p.get("stage") == "found" else W["rectified"]
        out.append(html.A(f"{stage}{W['photo'].format(n=i)}", href=f"/patrol-photos/{p['dir']}/{p['file']}",
                          target="_blank", id=f"hz-photo-{h['hazard_id']}-{i}"))
    return out


def card(d: Any, h: dict[str, Any], now: float) -> html.Article:
    plan = plans_in_force(d.settings).get(h["plan_id"])
    late = hazard_overdue(h, now)
    where = place_label(h["community"], h.get("compound_id") or "")
    lines = [html.Div(h["finding"], className="hz-what"),
             html.Div(f"{where} · {plan.name if plan else ''} · {h['checkpoint']}", className="hz-meta"),
             html.Div(f"{W['found']}: {h['found_by']} {local_time(h['found_at'])}", className="hz-meta"),
             html.Div([f"{W['deadline']}: {beijing(epoch(h['deadline'])):%m-%d %H:%M}",
                       html.Span(f" · {W['overdue']}", className="hz-late") if late else None],
                      className="hz-meta"),
             html.Div(HAZARD_STATE_LABEL.get(h["state"], h["state"]), className="pt-state",
                      id=f"hz-state-{h['hazard_id']}")]
    if h.get("rectified_at"):
        lines.append(html.Div(f"{W['rectified']}: {h['rectified_by']} {local_time(h['rectified_at'])} "
                              f"{h.get('rectify_note') or ''}", className="hz-meta"))
    if h.get("closed_at"):
        lines.append(html.Div(f"{W['closed']}: {h['closed_by']} {local_time(h['closed_at'])} "
                              f"{h.get('close_note') or ''}", className="hz-meta"))
    lines.append(html.Div(photo_links(h), className="hz-photos"))
    cls = "hz-card" + (" late" if late else "") + (" closed" if h["state"] == "closed" else "")
    return html.Article(lines, className=cls, id=f"hz-{h['hazard_id']}")


def listing(d: Any, which: str | None) -> tuple[list[Any], list[dict[str, str]]]:
    now = time.time()
    rows = hazards(d, which)
    cards = [card(d, h, now) for h in rows] or [html.Div(W["empty"], className="pt-empty")]
    open_ = d.store.hazards(["open", "rectified"])
    opts = [{"label": f"{h['finding'][:24]} · {h['checkpoint']}", "value": h["hazard_id"]} for h in open_]
    return cards, opts


def layout(**_kw: Any) -> html.Div:
    d = mapview.dctx()
    cards, opts = listing(d, "")
    return html.Div(className="sub-page hazard-page", children=[
        html.H2(W["heading"]),
        html.P(W["intro"], className="muted"),
        dcc.Interval(id="hz-tick", interval=REFRESH_MS),
        html.Div(className="hz-form", children=[
            dcc.Dropdown(id="hz-pick", options=opts, searchable=False, clearable=False),
            html.Label(W["note"], htmlFor="hz-note"),
            dcc.Textarea(id="hz-note", maxLength=500, className="hz-note"),
            html.Label(W["photos"]),
            dcc.Upload(id="hz-photos", multiple=True, accept="image/jpeg,image/png,image/webp",
                       children=html.Div(PATROL_WORDS["photo_pick"], className="pt-pick")),
            html.Button(W["rectify"], id="hz-rectify", className="hz-btn"),
            html.Button(W["close"], id="hz-close", className="hz-btn close"),
            html.Div(id="hz-msg", className="pt-msg", role="status"),
        ]),
        dcc.RadioItems(id="hz-filter", options=choices(), value="", inline=True, className="f-checks"),
        html.Div(cards, id="hz-list", className="hz-list"),
    ])


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("hz-list", "children"),
        Output("hz-pick", "options"),
        Output("hz-msg", "children"),
        Output("hz-photos", "contents"),
        Input("hz-tick", "n_intervals"),
        Input("hz-filter", "value"),
        Input("hz-rectify", "n_clicks"),
        Input("hz-close", "n_clicks"),
        State("hz-pick", "value"),
        State("hz-note", "value"),
        State("hz-photos", "contents"),
        prevent_initial_call=True,
    )
    def _act(_n: Any, which: str | None, rect: int | None, close: int | None, hazard_id: str | None,
             note: str | None, photos: list[str] | None) -> tuple[Any, Any, Any, Any]:
        from dash import ctx

        msg: Any = no_update
        clear: Any = no_update
        if ctx.triggered_id in ("hz-rectify", "hz-close") and hazard_id:
            if ctx.triggered_id == "hz-rectify":
                raw = [p.split(",", 1)[1] if p.startswith("data:") else p for p in (photos or [])][:MAX_PHOTOS + 1]
                out = d.command("hazard_rectify", hazard_id=hazard_id, note=(note or "").strip(), photos=raw)
            else:
                out = d.command("hazard_close", hazard_id=hazard_id, note=(note or "").strip())
            if out.ok:
                state = out.body["hazard"]["state"]
                msg, clear = W["done"].format(state=HAZARD_STATE_LABEL.get(state, state)), None
            else:
                msg = html.Span(W["refused"].format(why=for_people(out.body.get("error"))), className="pt-err")
        cards, opts = listing(d, which)
        return cards, opts, msg, clear
