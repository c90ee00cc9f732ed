"""The one map as a block shared by `/` and `/wall`: the graph, its legend and layer toggles, and the
callbacks that keep it live (a `Patch()` of what changed since the version the browser holds) and
turn a click on a compound / device / alert into its page."""

from __future__ import annotations

from typing import Any

import flask
from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from core.severity import SEVERITIES
from dashboard import mapfig
from dashboard.offline import style_url
from dashboard.theme import (
    DEVICE_CLUSTER,
    DEVICE_NORMAL,
    DEVICE_OFFLINE,
    KIND_LABEL,
    RESOURCE_STYLE,
    SEVERITY_COLOR,
    severity_label,
)
from geodata.resources import CATEGORIES

PULSE_MS = 1500  # how often the halo overlay is re-placed (the pulse itself is a CSS animation)
LAYER_OPTIONS = [
    {"label": "小区", "value": "compounds"},
    {"label": "建筑", "value": "buildings"},
    {"label": "单位", "value": "units"},
    {"label": "商铺", "value": "shops"},
    {"label": "应急资源", "value": "resources"},
    *({"label": KIND_LABEL[k], "value": f"kind:{k}"} for k in ("gas", "water", "power", "camera")),
    {"label": "底图", "value": "basemap"},  # the street's own basemap (geodata basemap), when installed
    {"label": "仅告警", "value": "alerts_only"},
]
LAYERS_ON = [o["value"] for o in LAYER_OPTIONS if o["value"] != "alerts_only"]


def dctx() -> Any:
    """The Dashboard of the app serving this request."""
    return flask.current_app.config["SC_DASHBOARD"]


def base_url() -> str:
    return flask.request.host_url if flask.has_request_context() else "http://127.0.0.1/"


def legend() -> html.Div:
    rows: list[Any] = [html.Div("风险等级", className="legend-title")]
    for s in SEVERITIES:
        rows.append(html.Div([html.Span(className="swatch", style={"backgroundColor": SEVERITY_COLOR[s]}),
                              severity_label(s)], className="legend-row"))
    for colour, text, cls in ((DEVICE_NORMAL, "设备正常", "dot"), (DEVICE_OFFLINE, "离线/无数据", "dot"),
                              ("#c9a2ff", "重点单位", "dot"), ("#7fd1ff", "沿街商铺", "dot")):
        rows.append(html.Div([html.Span(className=cls, style={"backgroundColor": colour}), text],
                             className="legend-row"))
    res = [html.Span([html.Span(className="dot", style={"backgroundColor": RESOURCE_STYLE[k][0]}), c.label],
                     className="res-item") for k, c in CATEGORIES.items() if k in RESOURCE_STYLE]
    rows.append(html.Div(res, className="legend-row legend-res", title="应急资源"))
    bubble = html.Span(className="bubble", style={"backgroundColor": DEVICE_CLUSTER})
    rows.append(html.Div([bubble, "设备聚合(数字为台数)"], className="legend-row"))
    rows.append(html.Div([html.Span(className="ring acked"), "已确认"], className="legend-row"))
    rows.append(html.Div([html.Span(className="ring faded"), "近期解除"], className="legend-row"))
    return html.Div(rows, className="map-legend")


def static_figure(d: Any, base: Any, reg: Any, registry_version: str) -> dict[str, Any]:
    """The static figure, built once per (GIS layers, registry, host) of this dashboard: every page load
    sends the same one, and building it (plotly's validation) is most of a page load's server time."""
    key = (base.key, registry_version, style_url(base_url()))
    cache: dict[tuple[str, str, str], dict[str, Any]] = d.figures
    fig = cache.get(key)
    if fig is None:
        fig = mapfig.build_figure(base, reg, key[2])
        if len(cache) >= 8:  # old versions: a registry or layer change makes the earlier ones useless
            cache.clear()
        cache[key] = fig
    return fig


def map_block(d: Any, wall: bool) -> html.Div:
    base, reg, live = d.state.view()
    fig = static_figure(d, base, reg, live.registry_version)
    sig = {"v": live.version, "reg": live.registry_version, "base": base.key}
    warn = [html.Div(e, className="map-warning") for e in base.errors]
    toggles = html.Details(
        [html.Summary("图层"),
         dcc.Checklist(id="layer-toggles", options=LAYER_OPTIONS, value=LAYERS_ON, className="layer-list",
                       inputClassName="layer-box", labelClassName="layer-item", persistence=True,
                       persistence_type="local")],
        className="layer-panel" + (" wall-hidden" if wall else ""),
    )
    return html.Div(
        className="map-wrap",
        id="map-wrap",
        children=[
            dcc.Interval(id="tick", interval=max(500, d.settings.dashboard_refresh_ms)),
            dcc.Interval(id="pulse", interval=PULSE_MS),
            dcc.Store(id="map-sig", data=sig),
            dcc.Store(id="map-live", data=mapfig.live_layers(live, reg, base)),  # drawn by assets/clientside.js
            html.Div(id="live-sink", hidden=True),
            dcc.Store(id="map-ready", data=False),
            html.Div(id="pulse-sink", hidden=True),
            html.Div(id="toggle-sink", hidden=True),
            dcc.Graph(
                id="onemap",
                figure=fig,
                className="onemap",
                style={"height": "100%", "width": "100%"},
                config={"displayModeBar": False, "scrollZoom": True, "displaylogo": False, "responsive": True},
            ),
            legend(),
            toggles,
            *warn,
        ],
    )


def refresh_map(d: Any, sig: dict[str, Any] | None, ready: bool = True) -> tuple[Any, Any, Any]:
    """(figure: whole, Patch or no_update; live layers or no_update; new sig): nothing at all when the
    browser is current. The figure changes only with the registry or the GIS layers."""
    sig = sig or {}
    state = d.state
    if sig.get("v") == state.version and not d.mapdata_changed(sig):
        return no_update, no_update, no_update
    base, reg, live = state.view()
    new_sig = {"v": live.version, "reg": live.registry_version, "base": base.key}
    fig: Any = no_update
    if base.key != sig.get("base"):  # layers re-imported: the trace shapes changed, send it all
        fig = mapfig.build_figure(base, reg, style_url(base_url()))
    elif live.registry_version != sig.get("reg"):
        fig = mapfig.registry_patch(reg, base)
    if fig is not no_update and not ready:  # the map style is still loading: a new figure now races
        return no_update, no_update, no_update  # plotly ("reading 'layers'"); the next tick sends it
    old = state.past_view(int(sig.get("v", -1)), live.registry_version, base.key)
    layers = mapfig.live_layers(live, reg, base)
    if fig is no_update and old is not None and mapfig.live_layers(old, reg, base) == layers:
        layers = no_update  # e.g. a new value on an open alert: nothing drawn changed
    return fig, layers, new_sig


def register(app: Dash, d: Any) -> None:
    app.clientside_callback(
        ClientsideFunction("sc", "pulse"),
        Output("pulse-sink", "children"),
        Output("map-ready", "data"),
        Input("pulse", "n_intervals"),
        State("map-ready", "data"),
    )
    app.clientside_callback(
        ClientsideFunction("sc", "layers"),
        Output("toggle-sink", "children"),
        Input("layer-toggles", "value"),
        Input("onemap", "figure"),
        Input("map-ready", "data"),
    )
    app.clientside_callback(
        ClientsideFunction("sc", "mapClick"),
        Output("nav", "pathname", allow_duplicate=True),
        Input("onemap", "clickData"),
        prevent_initial_call=True,
    )

    app.clientside_callback(
        ClientsideFunction("sc", "live"),
        Output("live-sink", "children"),
        Input("map-live", "data"),
        Input("map-ready", "data"),
    )

    @app.callback(
        Output("onemap", "figure"),
        Output("map-live", "data"),
        Output("map-sig", "data"),
        Input("tick", "n_intervals"),
        State("map-sig", "data"),
        State("map-ready", "data"),
        State("panel-sig", "data"),
    )
    def _refresh(_n: int, sig: dict[str, Any] | None, ready: bool, panel: dict[str, Any] | None) -> tuple:
        # The list / tiles first: the map follows one tick after the page's panel shows the new version.
        if panel is not None and panel.get("v") != d.state.version:
            return no_update, no_update, no_update
        return refresh_map(d, sig, bool(ready))
