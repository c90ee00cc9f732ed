"""`/wall`: the big screen of the command center, read from 5 m on a 1080p display.

No controls but one: the sound switch (browsers start audio only after a click on the page). Per
community three labelled figures (未处置 / 已确认 / 离线), a clock, the newest red/orange alert in a
banner with the map flying to it and a tone, and a ticker of the latest events.
"""

from __future__ import annotations

from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from alerts.rules import title_of
from core.contract import COMMUNITIES, Alert
from core.severity import COLOUR
from core.timebase import local_time
from dashboard import alertview, mapview, shelfmark
from dashboard.live import Live, alert_point, counts_by_community
from dashboard.theme import KIND_LABEL, STATE_LABEL, severity_label

PATH = "/wall"
ORDER = 20  # place in the page list
TITLE = "大屏 · 车城路街道 综合一张图"
LOUD = ("red", "orange")
TICKER_N = 12


def newest_loud(live: Live) -> Alert | None:
    loud = [a for a in live.alerts if a.state == "active" and a.severity in LOUD]
    return max(loud, key=lambda a: a.started_at or "", default=None)


def banner(a: Alert | None, live: Live, base: Any) -> list[Any]:
    if a is None:
        return []
    place = base.places.get(a.compound_id or "")
    return [
        html.Span(severity_label(a.severity), className="wb-sev"),
        html.Span(f"{COMMUNITIES.get(a.community, a.community)} {place.name if place else ''}", className="wb-where"),
        html.Span(a.message or title_of(a.rule), className="wb-msg"),
        html.Span(local_time(a.started_at), className="wb-time"),
    ]


def ticker(live: Live, base: Any) -> list[Any]:
    """The latest events: raised / acknowledged / resolved, newest first."""
    events: list[tuple[str, str, Alert]] = []
    for a in live.alerts:
        events.append((a.updated_at if a.state == "acknowledged" else a.started_at, a.state, a))
    for a in live.resolved:
        events.append((a.resolved_at or a.updated_at, "resolved", a))
    events.sort(key=lambda e: e[0] or "", reverse=True)
    out: list[Any] = []
    for at, state, a in events[:TICKER_N]:
        place = base.places.get(a.compound_id or "")
        who = ""
        if state == "acknowledged" and a.acked_by:
            who = f"（{a.acked_by}）"
        elif state == "resolved":
            who = f"（{a.resolved_by}）" if a.resolved_by else "（自动）"
        out.append(html.Span(
            [html.B(local_time(at)), f" {STATE_LABEL.get(state, state)}{who} ",
             html.Span(severity_label(a.severity), style={"color": COLOUR.get(a.severity)}),
             f" {place.name if place else ''} {KIND_LABEL.get(a.kind, '')} {a.message or ''}"],
            className=f"tick-item st-{state}"))
    return out or [html.Span("暂无事件", className="tick-item")]


def panels(d: Any) -> tuple[Any, ...]:
    base, reg, live = d.state.view()
    loud = newest_loud(live)
    focus = None
    if loud is not None:
        pt = alert_point(loud, base, reg)
        if pt is not None:
            focus = {"id": loud.alert_id, "lon": pt[0], "lat": pt[1], "severity": loud.severity}
    return (alertview.wall_tiles(counts_by_community(live, reg)), banner(loud, live, base),
            "wall-banner " + (f"on sev-{loud.severity}" if loud else "off"), ticker(live, base),
            alertview.alert_list(live, base, console=False, rules_file=d.settings.alerts_rules_file),
            {"v": live.version}, focus)


def layout(**_kw: Any) -> html.Div:
    d = mapview.dctx()
    tiles, ban, ban_cls, tick, items, sig, focus = panels(d)
    return html.Div(
        className="body wall-body",
        children=[
            dcc.Store(id="panel-sig", data=sig),
            dcc.Interval(id="wall-tick", interval=max(500, d.settings.dashboard_refresh_ms)),
            dcc.Store(id="wall-focus", data=focus),
            html.Div(id="fly-sink", hidden=True),
            html.Div(id="wall-sound-sink", hidden=True),
            html.Div(
                className="wall-main",
                children=[
                    html.Div(ban, id="wall-banner", className=ban_cls, role="alert"),
                    *shelfmark.block(d, "wall-"),
                    mapview.map_block(d, wall=True),
                    html.Div(html.Div(tick, id="wall-ticker", className="ticker-track"), className="ticker"),
                ],
            ),
            html.Aside(
                className="wall-side",
                children=[
                    html.Div(tiles, id="wall-tiles", className="wall-tiles"),
                    html.Button("点击开启提示音", id="wall-sound", className="btn wall-sound", n_clicks=0),
                    html.H2("未解除告警"),
                    html.Ul(items, id="wall-list", className="alert-list wall-list"),
                ],
            ),
        ],
    )


def register(app: Dash, d: Any) -> None:
    @app.callback(
        Output("wall-tiles", "children"),
        Output("wall-banner", "children"),
        Output("wall-banner", "className"),
        Output("wall-ticker", "children"),
        Output("wall-list", "children"),
        Output("panel-sig", "data"),
        Output("wall-focus", "data"),
        Input("wall-tick", "n_intervals"),
        State("panel-sig", "data"),
    )
    def _refresh(_n: int, sig: dict[str, Any] | None) -> tuple:
        if (sig or {}).get("v") == d.state.version:
            return (no_update,) * 7
        return panels(d)

    shelfmark.register(app, d, "wall-tick", "wall-")

    app.clientside_callback(
        ClientsideFunction("sc", "flyTo"),
        Output("fly-sink", "children"),
        Input("wall-focus", "data"),
        Input("map-ready", "data"),
    )
    app.clientside_callback(
        ClientsideFunction("sc", "wallSound"),
        Output("wall-sound-sink", "children"),
        Output("wall-sound", "children"),
        Input("wall-focus", "data"),
        Input("wall-sound", "n_clicks"),
    )
