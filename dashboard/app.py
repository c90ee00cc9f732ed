"""The Dash app: layout of the one-map page, its live refresh, and the console actions.

`create_app(settings)` wires everything (store, map data, health, /api) onto one Flask server.
Live data reaches the browser only through `dcc.Interval` ticks: a tick whose picture did not change
sends nothing; one that did sends a `Patch()` of the few arrays that moved (see mapfig.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import flask
from dash import ALL, ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update

from alerts.store import AlertStore, store_path
from core.settings import Settings
from core.severity import SEVERITIES
from core.timebase import beijing_hms
from dashboard import alertview, mapfig
from dashboard.actions import AlertActions, Publisher
from dashboard.api import register_api
from dashboard.geo import BaseLayers, MapData
from dashboard.health import HealthChecker
from dashboard.live import OPEN_STATES, Live, compute_live, counts_by_community
from dashboard.login import current_user, register_login
from dashboard.offline import register_offline_routes, style_url
from dashboard.theme import DEVICE_NORMAL, SEVERITY_COLOR, install_page_head, severity_label

log = logging.getLogger(__name__)

TITLE = "车城路街道 综合一张图"
PULSE_MS = 1500  # software WebGL needs >= 1.2 s between restyles to go idle (offline-map notes)
HEALTH_MS = 10_000
DEFAULT_DUTY = "值班员"


class Dashboard:
    """Everything the callbacks and routes share, for one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = AlertStore(store_path(settings.data_path))
        self.mapdata = MapData(settings)
        self.publisher = Publisher(settings)
        self.actions = AlertActions(self.store, self.publisher)
        self.health = HealthChecker(settings)

    def snapshot(self) -> tuple[BaseLayers, Any, Live]:
        base = self.mapdata.layers()
        reg = self.mapdata.registry()
        alerts = self.store.list(state=OPEN_STATES, limit=5000)
        live = compute_live(alerts, base, reg, str(getattr(reg, "version", "none")))
        return base, reg, live

    def close(self) -> None:
        self.publisher.close()
        self.store.close()


def is_wall(pathname: str | None, search: str | None) -> bool:
    return (pathname or "").rstrip("/").endswith("/wall") or "wall=1" in (search or "")


def _base_url(settings: Settings) -> str:
    if flask.has_request_context():
        return flask.request.host_url
    return f"http://127.0.0.1:{settings.http_port}/"


def legend() -> html.Div:
    rows: list[Any] = [html.Div("风险等级", className="legend-title")]
    for s in SEVERITIES:
        rows.append(
            html.Div(
                [html.Span(className="swatch", style={"backgroundColor": SEVERITY_COLOR[s]}), f"{severity_label(s)}"],
                className="legend-row",
            )
        )
    for colour, label, cls in (
        (DEVICE_NORMAL, "设备正常", "dot"),
        ("#c9a2ff", "重点单位", "dot"),
        ("#7fd1ff", "沿街商铺", "dot"),
    ):
        rows.append(
            html.Div([html.Span(className=cls, style={"backgroundColor": colour}), label], className="legend-row")
        )
    return html.Div(rows, className="map-legend")


def make_layout(dash_ctx: Dashboard) -> html.Div:
    base, reg, live = dash_ctx.snapshot()
    fig = mapfig.build_figure(base, reg, live, style_url(_base_url(dash_ctx.settings)))
    counts = counts_by_community(live, reg)
    sig = {"sig": live.signature, "reg": live.registry_version, "base": base.key, "wall": False, "at": time.time()}
    warn = [html.Div(e, className="map-warning") for e in base.errors]
    return html.Div(
        id="root",
        className="root",
        children=[
            dcc.Location(id="url", refresh=False),
            dcc.Interval(id="tick", interval=max(500, dash_ctx.settings.dashboard_refresh_ms)),
            dcc.Interval(id="pulse", interval=PULSE_MS),
            dcc.Interval(id="clock-tick", interval=1000),
            dcc.Interval(id="health-tick", interval=HEALTH_MS),
            dcc.Store(id="sig", data=sig),
            dcc.Store(id="action-done"),
            dcc.Store(id="pending-resolve"),
            dcc.ConfirmDialog(id="confirm-resolve"),
            html.Div(id="pulse-sink", hidden=True),
            html.Header(
                className="topbar",
                children=[
                    html.Div(
                        [html.H1(TITLE), html.Span("十堰市张湾区 · 城市安全运行监测", className="subtitle")],
                        className="title-block",
                    ),
                    html.Div(id="services", className="services"),
                    html.Div(id="stale", className="stale hidden", children="数据未更新，请检查服务"),
                    html.Div(
                        [
                            html.Div(id="clock", className="clock"),
                            html.Div(id="updated", className="updated", children=""),
                        ],
                        className="clock-block",
                    ),
                ],
            ),
            html.Main(
                className="body",
                children=[
                    html.Div(
                        className="map-wrap",
                        children=[
                            dcc.Graph(
                                id="onemap",
                                figure=fig,
                                className="onemap",
                                style={"height": "100%", "width": "100%"},
                                # Responsive: the map follows the wall display's size, not the first paint's.
                                config={"displayModeBar": False, "scrollZoom": True, "displaylogo": False,
                                        "responsive": True},
                            ),
                            legend(),
                            *warn,
                        ],
                    ),
                    html.Aside(
                        className="side",
                        children=[
                            html.Div(alertview.counters(counts, live), id="counters", className="counters"),
                            html.Div(
                                className="console-bar console-only",
                                children=[
                                    html.Label("值班员", htmlFor="duty-name"),
                                    dcc.Input(
                                        id="duty-name",
                                        type="text",
                                        placeholder="姓名",
                                        value=DEFAULT_DUTY,
                                        debounce=True,
                                        persistence=True,
                                        persistence_type="local",
                                        maxLength=40,
                                    ),
                                    # Recorded with the next acknowledgement or resolution, then cleared.
                                    dcc.Input(id="action-note", type="text", placeholder="处置备注(可选)",
                                              value="", maxLength=200, className="action-note"),
                                    html.Div(id="action-msg", className="action-msg"),
                                ],
                            ),
                            html.H2(
                                ["未解除告警", html.Span(str(len(live.alerts)), id="alert-count", className="count")]
                            ),
                            html.Ul(
                                alertview.alert_list(live, base, console=True), id="alert-list", className="alert-list"
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


def create_app(settings: Settings) -> Dash:
    dctx = Dashboard(settings)
    app = Dash(
        __name__,
        title=TITLE,
        update_title=None,
        serve_locally=True,
        compress=False,
        suppress_callback_exceptions=True,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.layout = lambda: make_layout(dctx)
    install_page_head(app)  # severity colours as CSS variables, the clock's time zone
    register_offline_routes(app.server)
    register_login(app.server, settings)
    register_api(app.server, settings, dctx.store, dctx.actions, dctx.health)
    app.server.config["SC_DASHBOARD"] = dctx
    app.server.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.server.json.sort_keys = False  # type: ignore[attr-defined]
    register_callbacks(app, dctx)
    return app


def register_callbacks(app: Dash, dctx: Dashboard) -> None:
    app.clientside_callback(
        "function(p, s){ return (p || '').replace(/\\/$/, '').endsWith('/wall') || (s || '').includes('wall=1')"
        " ? 'root wall' : 'root'; }",
        Output("root", "className"),
        Input("url", "pathname"),
        Input("url", "search"),
    )
    app.clientside_callback(
        ClientsideFunction("sc", "pulse"), Output("pulse-sink", "children"), Input("pulse", "n_intervals")
    )
    app.clientside_callback(
        ClientsideFunction("sc", "clock"),
        Output("clock", "children"),
        Output("stale", "className"),
        Input("clock-tick", "n_intervals"),
        State("sig", "data"),
        State("tick", "interval"),
    )

    @app.callback(
        Output("onemap", "figure"),
        Output("alert-list", "children"),
        Output("counters", "children"),
        Output("alert-count", "children"),
        Output("sig", "data"),
        Output("updated", "children"),
        Input("tick", "n_intervals"),
        Input("action-done", "data"),
        Input("url", "pathname"),
        Input("url", "search"),
        State("sig", "data"),
    )
    def refresh(_n: int, _done: Any, pathname: str | None, search: str | None, sig: dict[str, Any] | None) -> tuple:
        sig = sig or {}
        wall = is_wall(pathname, search)
        base, reg, live = dctx.snapshot()
        now = time.time()
        updated = "更新 " + beijing_hms(now)
        new_sig = {"sig": live.signature, "reg": live.registry_version, "base": base.key, "wall": wall, "at": now}
        if new_sig["sig"] == sig.get("sig") and base.key == sig.get("base") and wall == sig.get("wall"):
            return no_update, no_update, no_update, no_update, new_sig, updated
        if base.key != sig.get("base"):  # layers re-imported: the trace shapes changed, send it all
            fig: Any = mapfig.build_figure(base, reg, live, style_url(_base_url(dctx.settings)))
        else:
            fig = mapfig.patch_figure(live, reg, base, devices_changed=live.registry_version != sig.get("reg"))
        items = alertview.alert_list(live, base, console=not wall)
        cards = alertview.counters(counts_by_community(live, reg), live)
        return fig, items, cards, str(len(live.alerts)), new_sig, updated

    @app.callback(Output("services", "children"), Input("health-tick", "n_intervals"))
    def services(_n: int) -> list[Any]:
        _ok, body = dctx.health.report()
        return alertview.service_bar(body)

    @app.callback(
        Output("action-done", "data"),
        Output("action-msg", "children"),
        Output("action-note", "value"),
        Input({"type": "ack-btn", "index": ALL}, "n_clicks"),
        State("duty-name", "value"),
        State("action-note", "value"),
        prevent_initial_call=True,
    )
    def ack(_clicks: list[int | None], duty: str | None, note: str | None) -> tuple:
        trig = ctx.triggered_id
        if not trig or not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update, no_update  # a re-rendered list, not a click
        who = current_user() or (duty or "").strip() or DEFAULT_DUTY
        out = dctx.actions.acknowledge(trig["index"], who, (note or "").strip() or None)
        msg = "已确认" if out.status == 200 else f"未能确认: {out.error}"
        return {"t": time.time(), "id": trig["index"]}, msg, ("" if out.status == 200 else no_update)

    @app.callback(
        Output("pending-resolve", "data"),
        Output("confirm-resolve", "displayed"),
        Output("confirm-resolve", "message"),
        Input({"type": "resolve-btn", "index": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def ask_resolve(_clicks: list[int | None]) -> tuple:
        trig = ctx.triggered_id
        if not trig or not ctx.triggered or not ctx.triggered[0].get("value"):
            return no_update, no_update, no_update
        alert = dctx.store.get(trig["index"])
        what = f"{severity_label(alert.severity)} {alert.message}" if alert else trig["index"]
        return trig["index"], True, f"确认该警情已处置完毕并解除？\n{what}"

    @app.callback(
        Output("action-done", "data", allow_duplicate=True),
        Output("action-msg", "children", allow_duplicate=True),
        Output("action-note", "value", allow_duplicate=True),
        Input("confirm-resolve", "submit_n_clicks"),
        State("pending-resolve", "data"),
        State("duty-name", "value"),
        State("action-note", "value"),
        prevent_initial_call=True,
    )
    def resolve(_n: int | None, alert_id: str | None, duty: str | None, note: str | None) -> tuple:
        if not alert_id:
            return no_update, no_update, no_update
        who = current_user() or (duty or "").strip() or DEFAULT_DUTY
        out = dctx.actions.resolve(alert_id, who, (note or "").strip() or None)
        msg = "已解除" if out.status == 200 else f"未能解除: {out.error}"
        return {"t": time.time(), "id": alert_id}, msg, ("" if out.status == 200 else no_update)
