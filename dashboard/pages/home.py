"""`/`: the one map with the on-call console beside it (on a phone: the console first, the map a tab).

The console's list, counters and the map refresh from the process's memory (dashboard/state.py):
a tick whose version the browser already holds sends nothing. A click acknowledges / resolves in the
store, puts the new state into memory and kicks the map and list at once, so the person who clicked
does not wait for the next tick.
"""

from __future__ import annotations

import time
from typing import Any

from dash import ALL, ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard import alertview, dispatchview, mapview, shelfmark
from dashboard.live import Live, counts_by_community
from dashboard.login import has_role
from dashboard.theme import severity_label

PATH = "/"
ORDER = 10  # place in the page list
TITLE = "车城路街道 综合一张图"


def loud_ids(live: Live) -> list[str]:
    """Active red / orange alerts: a new one among them sounds the console's tone."""
    return [a.alert_id for a in live.alerts if a.state == "active" and a.severity in ("red", "orange")]


def console(d: Any) -> html.Aside:
    base, reg, live = d.state.view()
    counts = counts_by_community(live, reg)
    return html.Aside(
        className="side",
        id="side",
        children=[
            dcc.Store(id="panel-sig", data={"v": live.version}),
            dcc.Store(id="action-kick"),  # an action on this page: its list refreshes at once
            dcc.Interval(id="home-tick", interval=max(500, d.settings.dashboard_refresh_ms)),
            dcc.Store(id="pending-resolve"),
            dcc.Store(id="alarm-ids", data=loud_ids(live)),
            dcc.ConfirmDialog(id="confirm-resolve"),
            *shelfmark.block(d),
            html.Div(alertview.counters(counts, live), id="counters", className="counters"),
            html.Div(
                className="console-bar console-only",
                children=[
                    # Recorded with the next acknowledgement or resolution, then cleared; the action is
                    # signed by the signed-in account (dashboard.login.current_user).
                    dcc.Input(id="action-note", type="text", placeholder="处置备注（可选）", value="", maxLength=200,
                              className="action-note"),
                    html.Button("提示音 关", id="sound-btn", className="btn btn-sound", n_clicks=0,
                                title="新的红色/橙色告警时响铃：点击开启/关闭"),
                    html.Div(id="action-msg", className="action-msg", role="status"),
                ],
            ),
            html.H2(["未解除告警", html.Span(str(len(live.alerts)), id="alert-count", className="count")]),
            # A viewer's list has no buttons (and the actions refuse a viewer anyway).
            html.Ul(alertview.alert_list(live, base, console=has_role("operator"),
                                         rules_file=d.settings.alerts_rules_file), id="alert-list",
                    className="alert-list"),
            html.Div(id="sound-sink", hidden=True),
        ],
    )


def layout(**_kw: Any) -> html.Div:
    d = mapview.dctx()
    return html.Div(
        className="body home-body",
        id="home-body",
        children=[
            html.Div(
                [html.Button("告警列表", id="tab-list", className="tab on", n_clicks=0),
                 html.Button("地图", id="tab-map", className="tab", n_clicks=0)],
                className="phone-tabs",
            ),
            console(d),
            mapview.map_block(d, wall=False),
        ],
    )


def register(app: Dash, d: Any) -> None:
    shelfmark.register(app, d, "home-tick")

    app.clientside_callback(
        ClientsideFunction("sc", "phoneTab"),
        Output("home-body", "className"),
        Input("tab-list", "n_clicks"),
        Input("tab-map", "n_clicks"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("sc", "alarmSound"),
        Output("sound-sink", "children"),
        Input("alarm-ids", "data"),
        Input("sound-btn", "n_clicks"),
    )

    @app.callback(
        Output("alert-list", "children"),
        Output("counters", "children"),
        Output("alert-count", "children"),
        Output("panel-sig", "data"),
        Output("alarm-ids", "data"),
        Input("home-tick", "n_intervals"),
        Input("action-kick", "data"),
        State("panel-sig", "data"),
    )
    def _refresh(_n: int, _kick: Any, sig: dict[str, Any] | None) -> tuple:
        if (sig or {}).get("v") == d.state.version:
            return no_update, no_update, no_update, no_update, no_update
        base, reg, live = d.state.view()
        cards = alertview.counters(counts_by_community(live, reg), live)
        return (alertview.alert_list(live, base, console=has_role("operator"), rules_file=d.settings.alerts_rules_file),
                cards, str(len(live.alerts)),
                {"v": live.version}, loud_ids(live))

    @app.callback(
        Output("action-kick", "data"),
        Output("action-msg", "children"),
        Output("action-note", "value"),
        Input({"type": "ack-btn", "index": ALL}, "n_clicks"),
        State("action-note", "value"),
        prevent_initial_call=True,
    )
    def _ack(_clicks: list[int | None], note: str | None) -> tuple:
        trig = ctx.triggered_id
        if not trig or not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update, no_update  # a re-rendered list, not a click
        out = d.acknowledge(trig["index"], (note or "").strip() or None)
        msg = f"已确认（{d.signer()}）" if out.status == 200 else f"未能确认: {dispatchview.for_people(out.error)}"
        return {"t": time.time(), "id": trig["index"]}, msg, ("" if out.status == 200 else no_update)

    @app.callback(
        Output("pending-resolve", "data"),
        Output("confirm-resolve", "displayed"),
        Output("confirm-resolve", "message"),
        Input({"type": "resolve-btn", "index": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def _ask_resolve(_clicks: list[int | None]) -> tuple:
        trig = ctx.triggered_id
        if not trig or not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update, no_update
        alert = d.state.get(trig["index"]) or d.store.get(trig["index"])
        what = f"{severity_label(alert.severity)} {alert.message}" if alert else trig["index"]
        live = d.actions.live(trig["index"])
        if live is None:
            return {"id": trig["index"], "override": False}, True, f"确认该警情已处置完毕并解除？\n{what}"
        # The danger is still measured (alerts/guard.py): say so, with the reading and its time; OK
        # then means "override", which the guard takes only with a reason typed in the note.
        return {"id": trig["index"], "override": True}, True, alertview.confirm_text(live, what)

    @app.callback(
        Output("action-kick", "data", allow_duplicate=True),
        Output("action-msg", "children", allow_duplicate=True),
        Output("action-note", "value", allow_duplicate=True),
        Input("confirm-resolve", "submit_n_clicks"),
        State("pending-resolve", "data"),
        State("action-note", "value"),
        prevent_initial_call=True,
    )
    def _resolve(_n: int | None, pending: dict[str, Any] | None, note: str | None) -> tuple:
        if not pending or not pending.get("id"):
            return no_update, no_update, no_update
        alert_id = pending["id"]
        out = d.resolve(alert_id, (note or "").strip() or None, override=bool(pending.get("override")))
        msg = (f"已解除（{d.signer()}）" + ("，已记录为强制解除" if out.live is not None else "")
               if out.status == 200 else f"未能解除: {dispatchview.for_people(out.error)}")
        return {"t": time.time(), "id": alert_id}, msg, ("" if out.status == 200 else no_update)
