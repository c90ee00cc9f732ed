"""`/devices/<device_id>`: one device — where it is, online or not, its latest values, its open
alerts, and its trends (1 h raw, 24 h / 7 d from the 1-minute rollups) with alert marks."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html

from alerts.rules import title_of
from core.contract import COMMUNITIES, METRICS
from core.severity import COLOUR
from core.timebase import iso, local_time
from dashboard import mapview, trends
from dashboard.theme import KIND_LABEL, STATE_LABEL, severity_label

PATH_TEMPLATE = "/devices/<device_id>"
PATH = "/devices/none"
ORDER = 50  # place in the page list
TITLE = "设备 · 车城路街道 综合一张图"


def open_alerts(d: Any, alerts: list[Any]) -> list[Any]:
    if not alerts:
        return [html.Li("无未解除告警", className="muted")]
    return [html.Li([html.Span(severity_label(a.severity), className="sev-badge",
                               style={"backgroundColor": COLOUR.get(a.severity, "#888")}),
                     f" {STATE_LABEL.get(a.state, a.state)} ",
                     dcc.Link(a.message or title_of(a.rule), href=f"/alerts/{a.alert_id}"),
                     html.Span(f" {local_time(a.started_at)}", className="muted")]) for a in alerts]


def trend_block(d: Any, kind: str, tag: str, value: str, metrics: list[str], range_key: str,
                agg: str = "mean", alerts_of: dict[str, str] | None = None) -> list[Any]:
    start, end = trends.window(range_key)
    try:
        got = trends.series(d.influx(), kind, metrics, tag, value, start, end, agg=agg)
    except trends.TrendError as exc:
        return [html.Div(str(exc), className="trend-error")]
    marks = d.store.list(since=iso(start), limit=200, **(alerts_of or {tag: value}))
    return [dcc.Graph(figure=trends.figure(tr, marks, start, end), config={"displayModeBar": False},
                      className="trend", id={"type": "trend", "metric": tr.metric, "kind": kind})
            for tr in got]


def layout(device_id: str | None = None, **_kw: Any) -> html.Div:
    d = mapview.dctx()
    reg = d.mapdata.registry()
    dev = reg.get(device_id or "")
    if dev is None:
        return html.Div([html.H2("未找到该设备"), dcc.Link("返回一张图", href="/")], className="sub-page")
    base = d.mapdata.layers()
    place = base.places.get(dev.compound_id)
    offline = dev.device_id in d.state.view()[2].offline_ids
    alerts = [a for a in d.state.alerts() if a.device_id == dev.device_id and a.state in ("active", "acknowledged")]
    try:
        now = trends.latest(d.influx(), dev.kind, "device_id", dev.device_id).get(dev.device_id, {})
        err = ""
    except trends.TrendError as exc:
        now, err = {}, str(exc)
    specs = METRICS.get(dev.kind, {})
    values = [html.Div([html.Div(trends.METRIC_LABEL.get(m, m), className="v-l"),
                        html.Div(trends.fmt_value(now.get(m), spec.unit), className="v-n")], className="value")
              for m, spec in specs.items() if m in now]
    facts = [("类别", KIND_LABEL.get(dev.kind, dev.kind)), ("社区", COMMUNITIES.get(dev.community, dev.community)),
             ("小区", dcc.Link(place.name if place else dev.compound_id, href=f"/compounds/{dev.compound_id}")),
             ("安装位置", str(dev.extra.get("install", "")) or "—"), ("上报周期", f"{dev.interval_s:g} 秒"),
             ("最新数据", trends.when(now.get("time")) or "—")]
    return html.Div(
        className="sub-page device-page",
        children=[
            dcc.Store(id="dev-id", data=dev.device_id),
            html.Div([html.H2(f"{KIND_LABEL.get(dev.kind, dev.kind)}设备 {dev.device_id}"),
                      html.Span("离线" if offline else "在线", className="online-tag " + ("off" if offline else "on"))],
                     className="alert-title-row"),
            html.Dl([x for k, v in facts for x in (html.Dt(k), html.Dd(v))], className="facts"),
            html.Div(values or [html.Div(err or "近 1 小时无数据", className="muted")], className="values"),
            html.H3("未解除告警"),
            html.Ul(open_alerts(d, alerts), className="plain-list"),
            html.H3("趋势"),
            dcc.RadioItems(id="dev-range", options=[{"label": v[0], "value": k} for k, v in trends.RANGES.items()],
                           value="24h", inline=True, className="f-checks range"),
            dcc.Loading(html.Div(id="dev-trends", className="trends"), type="dot"),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(Output("dev-trends", "children"), Input("dev-range", "value"), State("dev-id", "data"))
    def _trends(range_key: str, device_id: str) -> list[Any]:
        dev = d.mapdata.registry().get(device_id)
        if dev is None:
            return []
        metrics = [m.name for m in trends.numeric_metrics(dev.kind)]
        return trend_block(d, dev.kind, "device_id", dev.device_id, metrics, range_key or "24h")
