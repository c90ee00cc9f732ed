"""`/compounds/<compound_id>`: one compound (小区) — its devices with their latest values and online
state, open alerts, the units and shops in it (with contacts), and 24 h / 7 d trends per device kind."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html

from core.contract import KINDS, METRICS
from dashboard import mapview, trends
from dashboard.pages.device import open_alerts, trend_block
from dashboard.theme import KIND_LABEL

PATH_TEMPLATE = "/compounds/<compound_id>"
PATH = "/compounds/none"
ORDER = 60  # place in the page list
TITLE = "小区 · 车城路街道 综合一张图"
MAX_ROWS = 300


def _info(d: Any, compound_id: str) -> tuple[str, str, int] | None:
    base = d.mapdata.layers()
    if compound_id not in base.compound_ids:
        return None
    return base.compound_info[base.compound_ids.index(compound_id)]


def device_rows(d: Any, compound_id: str, devices: list[Any]) -> tuple[list[Any], str]:
    offline = d.state.view()[2].offline_ids
    latest: dict[str, dict[str, Any]] = {}
    err = ""
    for kind in sorted({dev.kind for dev in devices}):
        try:
            latest.update(trends.latest(d.influx(), kind, "compound_id", compound_id))
        except trends.TrendError as exc:
            err = str(exc)
            break
    rows = []
    order = {k: i for i, k in enumerate(KINDS)}
    for dev in sorted(devices, key=lambda x: (order.get(x.kind, 9), x.device_id))[:MAX_ROWS]:
        row = latest.get(dev.device_id, {})
        main, _agg = trends.COMPOUND_METRICS.get(dev.kind, ("", ""))
        unit = METRICS.get(dev.kind, {}).get(main)
        rows.append(html.Tr([
            html.Td(dcc.Link(dev.device_id, href=f"/devices/{dev.device_id}")),
            html.Td(KIND_LABEL.get(dev.kind, dev.kind)),
            html.Td(str(dev.extra.get("install", ""))),
            html.Td("离线" if dev.device_id in offline else "在线",
                    className="off" if dev.device_id in offline else "on"),
            html.Td(f"{trends.METRIC_LABEL.get(main, main)} "
                    f"{trends.fmt_value(row.get(main), unit.unit if unit else '')}" if main in row else "—"),
            html.Td(trends.when(row.get("time")) or "—"),
        ]))
    return rows, err


def places_in(d: Any, compound_id: str) -> list[Any]:
    base = d.mapdata.layers()
    out = []
    for pts, kind in ((base.units, "单位"), (base.shops, "商铺")):
        for p in pts:
            if p.get("compound_id") == compound_id:
                contact = " ".join(x for x in (p.get("contact", ""), p.get("phone", "")) if x)
                out.append(html.Tr([html.Td(kind), html.Td(p["name"]), html.Td(p["category"]),
                                    html.Td(contact or "—")]))
    return out or [html.Tr(html.Td("无登记的单位或商铺", colSpan=4, className="muted"))]


def layout(compound_id: str | None = None, **_kw: Any) -> html.Div:
    d = mapview.dctx()
    info = _info(d, compound_id or "")
    if info is None or compound_id is None:
        return html.Div([html.H2("未找到该小区"), dcc.Link("返回一张图", href="/")], className="sub-page")
    name, community_name, households = info
    devices = [dev for dev in d.mapdata.registry().values() if dev.compound_id == compound_id]
    alerts = [a for a in d.state.alerts() if a.compound_id == compound_id and a.state in ("active", "acknowledged")]
    rows, err = device_rows(d, compound_id, devices)
    kinds = sorted({dev.kind for dev in devices}, key=KINDS.index)
    return html.Div(
        className="sub-page compound-page",
        children=[
            dcc.Store(id="cmp-id", data=compound_id),
            html.H2(name),
            html.Dl([x for k, v in (("社区", community_name), ("户数", str(households)), ("设备", f"{len(devices)} 台"),
                                    ("未解除告警", f"{len(alerts)} 条")) for x in (html.Dt(k), html.Dd(v))],
                    className="facts"),
            html.H3("未解除告警"),
            html.Ul(open_alerts(d, alerts), className="plain-list"),
            html.H3("趋势（全小区）"),
            dcc.RadioItems(id="cmp-range", options=[{"label": trends.RANGES[k][0], "value": k} for k in ("24h", "7d")],
                           value="24h", inline=True, className="f-checks range"),
            dcc.Store(id="cmp-kinds", data=kinds),
            dcc.Loading(html.Div(id="cmp-trends", className="trends"), type="dot"),
            html.H3("设备"),
            html.Div(err, className="trend-error") if err else None,
            html.Table([html.Thead(html.Tr([html.Th(h) for h in ("编号", "类别", "位置", "状态", "最新值", "时间")])),
                        html.Tbody(rows)], className="table"),
            html.H3("单位与商铺"),
            html.Table([html.Thead(html.Tr([html.Th(h) for h in ("类型", "名称", "类别", "联系人")])),
                        html.Tbody(places_in(d, compound_id))], className="table"),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(Output("cmp-trends", "children"), Input("cmp-range", "value"), State("cmp-id", "data"),
                  State("cmp-kinds", "data"))
    def _trends(range_key: str, compound_id: str, kinds: list[str]) -> list[Any]:
        out: list[Any] = []
        for kind in kinds or []:
            metric, agg = trends.COMPOUND_METRICS[kind]
            got = trend_block(d, kind, "compound_id", compound_id, [metric], range_key or "24h", agg=agg)
            for g in got:
                if hasattr(g, "figure") and isinstance(g.figure, dict):
                    title = g.figure["layout"]["title"]["text"]
                    g.figure["layout"]["title"]["text"] = f"{KIND_LABEL[kind]} · {title} · {trends.AGG_LABEL[agg]}"
            out += got
        return out
