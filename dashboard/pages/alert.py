"""`/alerts/<alert_id>`: one alert — what, where, who is near, its timeline, the device's chart
around it (from InfluxDB), and the actions (signed by the signed-in account)."""

from __future__ import annotations

import math
import time
from typing import Any

import plotly.graph_objects as go
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from alerts import inhibit
from alerts.archive import archived
from alerts.guard import Live
from alerts.rules import title_of
from core.contract import COMMUNITIES, Alert
from core.severity import COLOUR
from core.timebase import local_time
from dashboard import alertview, dispatchview, mapview, trends
from dashboard.login import has_role
from dashboard.theme import BG, INHIBIT_FACT, KIND_LABEL, RESOURCE_STYLE, STATE_LABEL, TEXT, severity_label

PATH_TEMPLATE = "/alerts/<alert_id>"
PATH = "/alerts/none"
ORDER = 40  # place in the page list
TITLE = "告警详情 · 车城路街道 综合一张图"
TREND_REFRESH_MS = 5000  # one InfluxDB query per open alert page this often


def _get(d: Any, alert_id: str) -> Alert | None:
    return d.state.get(alert_id) or d.store.get(alert_id)


def header(d: Any, a: Alert) -> list[Any]:
    base = d.mapdata.layers()
    place = base.places.get(a.compound_id or "")
    facts = [
        ("状态", html.Span(STATE_LABEL.get(a.state, a.state), className=f"state-tag st-{a.state}")),
        ("规则", title_of(a.rule)),
        ("社区", COMMUNITIES.get(a.community, a.community)),
        ("小区", dcc.Link(place.name if place else a.compound_id, href=f"/compounds/{a.compound_id}")
         if a.compound_id else "—"),
        ("设备", dcc.Link(f"{KIND_LABEL.get(a.kind, a.kind)} {a.device_id}", href=f"/devices/{a.device_id}")
         if a.device_id else "—"),
        ("开始", local_time(a.started_at)),
        ("更新", local_time(a.updated_at)),
    ]
    if a.acked_by:
        facts.append(("确认人", a.acked_by))
    if a.state == "resolved":
        facts.append(("解除", f"{local_time(a.resolved_at)} " + (f"{a.resolved_by} 解除" if a.resolved_by
                                                              else "条件恢复，自动解除")))
    cause = inhibit.causes([a], d.state.alerts(), d.settings.alerts_rules_file).get(a.alert_id) \
        if a.state != "resolved" else None
    if cause is not None:  # muted while its cause is open: the way to the cause
        facts.append((INHIBIT_FACT, alertview.inhibited_link(cause)))
    if a.reopened:
        facts.append(("复燃", f"解除后观察期内再次报警 {a.reopened} 次（同一警情重开）"))
    if a.note:
        facts.append(("备注", a.note))
    return [
        html.Div([html.Span(severity_label(a.severity), className="sev-badge big-badge",
                            style={"backgroundColor": COLOUR.get(a.severity, "#888")}),
                  html.H2(a.message or title_of(a.rule), className="alert-title")], className="alert-title-row"),
        html.Dl([x for k, v in facts for x in (html.Dt(k), html.Dd(v))], className="facts"),
    ]


def timeline(d: Any, a: Alert) -> list[Any]:
    steps = d.store.timeline(a.alert_id) if hasattr(d.store, "timeline") else []
    if not steps:
        return [html.Li("暂无记录", className="muted")]
    out: list[Any] = []
    for s in steps:
        j = s.as_json()
        who = "" if j["by"] in ("system", None) else j["by"]
        extra = s.words()
        out.append(html.Li([html.Span(local_time(s.at), className="tl-time"), html.Span(j["label"], className="tl-ev"),
                            html.Span(who, className="tl-who"), html.Span(extra, className="tl-note")],
                           className=f"tl-step ev-{s.event}"))
    return out


def nearby(a: Alert) -> list[Any]:
    n = a.nearby or {}
    if not n:
        return [html.Div("无周边信息", className="muted")]
    items = []
    for u in n.get("units", []):
        name, cat = str(u.get("name", "")), str(u.get("category", ""))
        items.append(html.Li(f"{name}{'' if not cat or cat in name else f'（{cat}）'} · {u.get('distance_m')} 米"))
    return [
        html.Div(f"{n.get('radius_m', 200):g} 米内：单位 {n.get('units_count', 0)} 家 · "
                 f"商铺 {n.get('shops_count', 0)} 家 · 约 {n.get('households', 0)} 户", className="near-sum"),
        html.Ul(items, className="near-list"),
    ]


def resources(d: Any, a: Alert) -> list[Any]:
    """The nearest valve, repair team, hydrant, shelter, AED with distances: those stored with the alert,
    else (a yellow or an older alert has none stored) asked of the map's layers now. The ones that
    matter to the alert's kind first."""
    from alerts.context import Surroundings, distance_text
    from geodata.resources import needs_for

    got = list((a.nearby or {}).get("resources") or [])
    if not got:
        from dashboard.live import alert_point
        from geodata.layers import layers_dir, load_layers
        from geodata.spatial import spatial_index

        base, reg = d.mapdata.layers(), d.mapdata.registry()
        # Only from a real spot (its own point, its device, its compound): not a community's centre.
        placed = a.lon is not None or (a.device_id or "") in reg or (a.compound_id or "") in base.places
        pt = alert_point(a, base, reg) if placed else None
        try:
            if pt is not None:
                got = Surroundings(0, spatial_index(load_layers(layers_dir(d.settings)))).resources(*pt)
        except Exception:  # the page without resources beats no page
            got = []
    if not got:
        return [html.Div("无应急资源信息", className="muted")]
    key = {n.key for n in needs_for(a.kind)}
    got.sort(key=lambda r: r.get("need") not in key)  # stable: NEEDS order within each group
    items = []
    for r in got:
        parts = [str(r.get("label", "")), distance_text(float(r.get("distance_m", 0))), str(r.get("name", ""))]
        if r.get("closes"):
            parts.append("关闭 " + "、".join(map(str, r["closes"])))
        if r.get("phone"):
            parts.append(str(r["phone"]))
        items.append(html.Li(" · ".join(p for p in parts if p),
                             className="res-item res-key" if r.get("need") in key else "res-item"))
    return [html.H4("最近应急资源"), html.Ul(items, className="near-list res-list", id="alert-resources")]


def context_map(d: Any, a: Alert) -> dict[str, Any]:
    """A small lon/lat sketch around the alert: compound outlines, the alert, units and shops nearby."""
    from dashboard.live import alert_point

    base = d.mapdata.layers()
    reg = d.mapdata.registry()
    pt = alert_point(a, base, reg) or (base.bounds[0], base.bounds[1])
    r = 0.0035
    fig = go.Figure()
    xs: list[float | None] = []
    ys: list[float | None] = []
    for f in base.compounds["features"]:
        geom = f["geometry"]
        polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        for poly in polys:
            ring = poly[0]
            if any(abs(x - pt[0]) < r * 2 and abs(y - pt[1]) < r * 2 for x, y in ring[:: max(1, len(ring) // 8)]):
                xs += [p[0] for p in ring] + [None]
                ys += [p[1] for p in ring] + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", fill="toself", fillcolor="rgba(42,74,117,0.45)",
                             line={"color": "#6f93c0", "width": 1}, hoverinfo="skip"))
    for pts, colour, name in ((base.units, "#c9a2ff", "单位"), (base.shops, "#7fd1ff", "商铺")):
        near = [p for p in pts if abs(p["lon"] - pt[0]) < r and abs(p["lat"] - pt[1]) < r]
        fig.add_trace(go.Scatter(x=[p["lon"] for p in near], y=[p["lat"] for p in near], mode="markers",
                                 marker={"size": 9, "color": colour}, text=[p["name"] for p in near],
                                 hovertemplate="%{text}<br>" + name + "<extra></extra>"))
    near_res = [p for p in base.resources if abs(p["lon"] - pt[0]) < r and abs(p["lat"] - pt[1]) < r]
    fig.add_trace(go.Scatter(  # valves, hydrants, teams, shelters, AEDs in their map colours
        x=[p["lon"] for p in near_res], y=[p["lat"] for p in near_res], mode="markers",
        marker={"size": [RESOURCE_STYLE.get(p["category"], ("#fff", 6))[1] + 2 for p in near_res],
                "color": [RESOURCE_STYLE.get(p["category"], ("#fff", 6))[0] for p in near_res]},
        text=[f"{p['name']}<br>{p['label']}" for p in near_res], hovertemplate="%{text}<extra></extra>"))
    colour = COLOUR.get(a.severity, "#fff")
    fig.add_trace(go.Scatter(x=[pt[0]], y=[pt[1]], mode="markers",
                             marker={"size": 22, "color": colour, "line": {"color": "#fff", "width": 3}},
                             hovertemplate=(a.message or title_of(a.rule)) + "<extra></extra>"))
    ratio = 1 / math.cos(math.radians(pt[1]))
    fig.update_layout(
        height=300, margin={"l": 0, "r": 0, "t": 0, "b": 0}, paper_bgcolor=BG, plot_bgcolor=BG, showlegend=False,
        font={"color": TEXT},
        xaxis={"range": [pt[0] - r, pt[0] + r], "visible": False},
        yaxis={"range": [pt[1] - r / ratio, pt[1] + r / ratio], "visible": False, "scaleanchor": "x",
               "scaleratio": ratio},
    )
    out: dict[str, Any] = fig.to_plotly_json()
    return out


def charts(d: Any, a: Alert) -> list[Any]:
    reg = d.mapdata.registry()
    dev = reg.get(a.device_id) if a.device_id else None
    if dev is None:
        return [html.Div("该告警无对应设备，无趋势图", className="muted")]
    metrics = [m.name for m in trends.numeric_metrics(dev.kind)]
    if a.metric in metrics:
        metrics.remove(a.metric)
        metrics.insert(0, a.metric)
    start, end = trends.around(a)
    try:
        got = trends.series(d.influx(), dev.kind, metrics[:2], "device_id", dev.device_id, start, end)
    except trends.TrendError as exc:
        return [html.Div(str(exc), className="trend-error")]
    marks = d.store.list(device_id=dev.device_id, limit=50)
    out = []
    for tr in got:
        thr = a.threshold if tr.metric == a.metric and isinstance(a.threshold, int | float) \
            and not isinstance(a.threshold, bool) else None
        out.append(dcc.Graph(figure=trends.figure(tr, marks, start, end, threshold=thr),
                             config={"displayModeBar": False}, className="trend", id=f"trend-{tr.metric}"))
    return out


def progress_key(ds: list[Any], a: Alert | None, done: Any) -> list[Any]:
    """What the dispatch list and the archive block show depends on: redrawn only when it changes."""
    return [dispatchview.signature(ds), a.state if a else None, done is not None]


def layout(alert_id: str | None = None, **_kw: Any) -> html.Div:
    d = mapview.dctx()
    a = _get(d, alert_id or "")
    if a is None:
        return html.Div([html.H2("未找到该告警"), dcc.Link("返回告警列表", href="/alerts")], className="sub-page")
    can_act = has_role("operator")  # a viewer sees everything and has no button to press
    ds = d.dispatches.for_alert(a.alert_id)
    done = archived(d.store, a.alert_id)
    return html.Div(
        className="sub-page alert-page",
        children=[
            dcc.Store(id="alert-id", data=a.alert_id),
            dcc.Store(id="alert-sig", data=a.updated_at + a.state),
            dcc.Interval(id="alert-tick", interval=1000),
            # The chart follows new readings: an alert opened the moment it is raised would otherwise
            # miss the very readings that raised it (ingest writes them a moment after the engine sees them).
            dcc.Interval(id="alert-trend-tick", interval=TREND_REFRESH_MS),
            html.Div(header(d, a), id="alert-head"),
            html.Div(
                className="alert-actions-bar",
                hidden=done is not None,  # archived: closed out, nothing left to press
                children=[
                    dcc.Input(id="alert-note", type="text", placeholder="处置备注（可选）", value="", maxLength=200),
                    html.Button("确认", id="alert-ack", className="btn btn-ack", n_clicks=0,
                                disabled=a.state != "active" or not can_act),
                    html.Button("解除", id="alert-resolve", className="btn btn-resolve", n_clicks=0,
                                disabled=a.state == "resolved" or not can_act),
                    # Asks first; while the danger is measured it says so, with the reading (alerts/guard.py).
                    dcc.ConfirmDialog(id="alert-confirm-resolve"),
                    dcc.Store(id="alert-pending-resolve"),
                    html.Div(id="alert-msg", className="action-msg", role="status"),
                ],
            ),
            html.Div(
                className="alert-grid",
                children=[
                    html.Section([html.H3("派单与现场反馈", id="dispatch"),
                                  dispatchview.dispatch_form(d.teams.current()[0], a.community, can_act,
                                                             hidden=done is not None),
                                  html.Div(id="dispatch-msg", className="action-msg", role="status"),
                                  dcc.Store(id="dispatch-sig", data=progress_key(ds, a, done)),
                                  html.Ul(dispatchview.dispatch_list(ds, can_act), id="dispatch-list",
                                          className="dispatch-list")]),
                    html.Section([html.H3("归档"),
                                  html.Div(dispatchview.archive_block(a, done, can_act),
                                           id="archive-block"),
                                  dcc.ConfirmDialog(id="archive-confirm"),
                                  html.Div(id="archive-msg", className="action-msg", role="status")]),
                ],
            ),
            html.Div(
                className="alert-grid",
                children=[
                    html.Section([html.H3("时间线"),
                                  html.Ul(timeline(d, a), id="alert-timeline", className="timeline")]),
                    html.Section([html.H3("周边"), *nearby(a), *resources(d, a),
                                  dcc.Graph(figure=context_map(d, a), config={"displayModeBar": False},
                                            className="context-map")]),
                ],
            ),
            html.Section([html.H3("设备曲线（告警前后）"),
                          html.Div(charts(d, a), id="alert-trends", className="trends")]),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("alert-head", "children"),
        Output("alert-timeline", "children"),
        Output("alert-sig", "data"),
        Output("alert-ack", "disabled"),
        Output("alert-resolve", "disabled"),
        Input("alert-tick", "n_intervals"),
        State("alert-id", "data"),
        State("alert-sig", "data"),
    )
    def _refresh(_n: int, alert_id: str, sig: str) -> tuple:
        a = d.state.get(alert_id)
        if a is None or a.updated_at + a.state == sig:
            return (no_update,) * 5
        can_act = has_role("operator")
        return (header(d, a), timeline(d, a), a.updated_at + a.state, a.state != "active" or not can_act,
                a.state == "resolved" or not can_act)

    @app.callback(
        Output("alert-trends", "children"),
        Input("alert-trend-tick", "n_intervals"),
        State("alert-id", "data"),
        prevent_initial_call=True,
    )
    def _trends(_n: int, alert_id: str) -> Any:
        a = _get(d, alert_id)
        if a is None or (a.state == "resolved" and trends.around(a)[1] < time.time() - TREND_REFRESH_MS / 1000):
            return no_update  # its window is over: the chart cannot change any more
        return charts(d, a)

    @app.callback(
        Output("alert-pending-resolve", "data"),
        Output("alert-confirm-resolve", "displayed"),
        Output("alert-confirm-resolve", "message"),
        Input("alert-resolve", "n_clicks"),
        State("alert-id", "data"),
        prevent_initial_call=True,
    )
    def _ask_resolve(n: int | None, alert_id: str) -> tuple:
        if not n:
            return no_update, no_update, no_update
        a = _get(d, alert_id)
        what = f"{severity_label(a.severity)} {a.message}" if a else alert_id
        live = d.actions.live(alert_id)
        if live is None:
            return {"id": alert_id, "override": False}, True, f"确认该警情已处置完毕并解除？\n{what}"
        return {"id": alert_id, "override": True}, True, alertview.confirm_text(live, what)

    @app.callback(
        Output("alert-msg", "children"),
        Output("alert-note", "value"),
        Input("alert-ack", "n_clicks"),
        Input("alert-confirm-resolve", "submit_n_clicks"),
        State("alert-id", "data"),
        State("alert-note", "value"),
        State("alert-pending-resolve", "data"),
        prevent_initial_call=True,
    )
    def _act(_a: int, _r: int, alert_id: str, note: str | None, pending: dict[str, Any] | None) -> tuple:
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update
        note = (note or "").strip() or None
        if ctx.triggered_id == "alert-ack":
            out, done = d.acknowledge(alert_id, note), "已确认"
        else:
            override = bool(pending and pending.get("id") == alert_id and pending.get("override"))
            out = d.resolve(alert_id, note, override=override)
            done = "已解除" + ("，已记录为强制解除" if out.live is not None else "")
        if out.status != 200:
            return f"未能完成: {dispatchview.for_people(out.error)}", no_update
        return f"{done}（{d.signer()}）", ""

    register_dispatch(app, d)


def register_dispatch(app: Dash, d: Any) -> None:
    """派单, the dispatches' progress and feedback, 撤回, 归档: each a command to the alerts service."""
    @app.callback(
        Output("dispatch-member", "options"),
        Output("dispatch-member", "value"),
        Input("dispatch-team", "value"),
        prevent_initial_call=True,
    )
    def _members(team: str | None) -> tuple:
        return dispatchview.member_options(d.teams.current()[0], team), dispatchview.WHOLE_TEAM

    @app.callback(
        Output("dispatch-list", "children"),
        Output("dispatch-sig", "data"),
        Output("archive-block", "children"),
        Output("alert-timeline", "children", allow_duplicate=True),
        Output("dispatch-form", "hidden"),
        Input("alert-tick", "n_intervals"),
        Input("dispatch-msg", "children"),
        Input("archive-msg", "children"),
        State("alert-id", "data"),
        State("dispatch-sig", "data"),
        prevent_initial_call=True,
    )
    def _progress(_n: int, _m1: Any, _m2: Any, alert_id: str, sig: list[Any] | None) -> tuple:
        """The dispatches as the field steps come in (and the archive block once resolved / archived)."""
        ds = d.dispatches.for_alert(alert_id)
        a = _get(d, alert_id)
        done = archived(d.store, alert_id)
        can_act = has_role("operator")
        key = progress_key(ds, a, done)
        if key == sig or a is None:
            return (no_update,) * 5
        return (dispatchview.dispatch_list(ds, can_act), key, dispatchview.archive_block(a, done, can_act),
                timeline(d, a), done is not None)

    @app.callback(
        Output("dispatch-msg", "children"),
        Output("alert-note", "value", allow_duplicate=True),
        Input("dispatch-btn", "n_clicks"),
        Input({"type": "dispatch-cancel", "index": ALL}, "n_clicks"),
        State("alert-id", "data"),
        State("dispatch-team", "value"),
        State("dispatch-member", "value"),
        State("dispatch-minutes", "value"),
        State("alert-note", "value"),
        prevent_initial_call=True,
    )
    def _dispatch(_n: int, _c: list[int | None], alert_id: str, team: str | None, member: str | None,
                  minutes: Any, note: str | None) -> Any:
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update  # a redrawn list, not a click
        note = (note or "").strip() or None
        if ctx.triggered_id == "dispatch-btn":
            out = d.dispatch(alert_id, team, member or None, minutes, note)
            if not out.ok:
                return f"未能派单: {dispatchview.for_people(out.body.get('error'))}", no_update
            return f"已派单：{out.body.get('team_name')} {out.body.get('assignee')}（{d.signer()}）", ""
        out = d.command("dispatch_cancel", dispatch_id=ctx.triggered_id["index"], note=note)
        if not out.ok:
            return f"未能撤回: {dispatchview.for_people(out.body.get('error'))}", no_update
        return f"已撤回派单（{d.signer()}）", ""

    @app.callback(
        Output("archive-msg", "children"),
        Output("archive-confirm", "displayed"),
        Output("archive-confirm", "message"),
        Input("archive-btn", "n_clicks"),
        Input("archive-confirm", "submit_n_clicks"),
        State("alert-id", "data"),
        State("archive-cause", "value"),
        State("alert-note", "value"),
        prevent_initial_call=True,
    )
    def _archive(_n: int, _ok: int, alert_id: str, cause: str | None, note: str | None) -> tuple:
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update, no_update
        if not cause:
            return "请先选择原因分类，再归档", False, no_update
        override = ctx.triggered_id == "archive-confirm"  # OK on the dialog naming the live reading
        out = d.command("archive", alert_id=alert_id, cause=cause, note=(note or "").strip() or None,
                        override=override or None)
        if out.ok:
            return f"已归档：{cause}（{d.signer()}）", False, no_update
        body = out.body
        if out.status == 409 and "value" in body and "holds" in body:  # still in alarm: say so, with the reading
            live = Live(**{k: body.get(k) for k in Live.__dataclass_fields__})
            return (f"未能归档: 设备仍在报警，最新读数 {live.words()}", True,
                    dispatchview.archive_confirm_text(live))
        return f"未能归档: {dispatchview.for_people(body.get('error'))}", False, no_update
