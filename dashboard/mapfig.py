"""The one map (综合一张图): a MapLibre figure that needs nothing from the internet.

Offline-map facts checked on this machine (plotly's MapLibre, no tiles): a local style.json whose
glyph URL 404s (MapLibre then draws text with local fonts), `symbol.icon=""`, circle markers only,
community labels drawn last, and live data changed only through `Patch()` on fixed trace indices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from dash import Patch

from core.contract import COMMUNITIES, Device
from dashboard.geo import BaseLayers
from dashboard.live import Live
from dashboard.theme import (
    BG,
    BUILDING,
    COMMUNITY_EDGE,
    COMMUNITY_FILL,
    COMPOUND_NORMAL,
    DEVICE_NORMAL,
    KIND_LABEL,
    ROAD,
    SEVERITY_COLOR,
    STATE_LABEL,
    TEXT,
    WATER,
    risk_colorscale,
    severity_label,
)

# Trace indices: Patch() addresses traces by position, so the order is fixed here.
T_COMPOUNDS, T_UNITS, T_SHOPS, T_DEVICES, T_HALO, T_RING, T_CORE, T_LABELS = range(8)
HALO_SIZES = (44, 84)  # the pulse toggles the halo between these (clientside)
UIREVISION = "onemap"  # keeps the operator's pan/zoom across every update


# The smallest map area we design for (a 1600×900 browser beside the console): the whole
# district must be in view there; larger wall displays just show more margin.
FIT_PX = (1000, 760)


def fit_view(bounds: tuple[float, float, float, float], px: tuple[int, int] = FIT_PX) -> dict[str, Any]:
    """Centre and zoom that fit the district into a map of about `px` pixels."""
    minx, miny, maxx, maxy = bounds
    lat_c = (miny + maxy) / 2
    span_x = max(maxx - minx, 1e-4)
    span_y = max((maxy - miny) / math.cos(math.radians(lat_c)), 1e-4)  # Web Mercator stretch
    zx = math.log2(px[0] * 360 / (span_x * 512))
    zy = math.log2(px[1] * 360 / (span_y * 512))
    return {"center": {"lon": (minx + maxx) / 2, "lat": lat_c}, "zoom": round(min(zx, zy) - 0.1, 2)}


def _layer(source: dict[str, Any], kind: str, **kw: Any) -> dict[str, Any]:
    return {"sourcetype": "geojson", "source": source, "type": kind, "below": "traces", **kw}


def base_layers(base: BaseLayers) -> list[dict[str, Any]]:
    """The light basemap: community tints, water, buildings, roads (with names), borders."""
    layers: list[dict[str, Any]] = []
    for f in base.communities["features"]:
        slug = f["properties"]["community"]
        one = {"type": "FeatureCollection", "features": [f]}
        layers.append(_layer(one, "fill", color=COMMUNITY_FILL.get(slug, "#1b3047"), opacity=0.9))
    layers.append(_layer(base.water, "fill", color=WATER, opacity=1.0))
    layers.append(_layer(base.buildings, "fill", color=BUILDING, opacity=0.9))
    layers.append(_layer(base.roads, "line", color=ROAD, line={"width": 5}, opacity=1.0))
    # Road names: Chinese-only text, no icon (an icon would be fetched from a CDN).
    layers.append(
        _layer(
            base.roads,
            "symbol",
            color="#9fb3cc",
            symbol={"text": "{name}", "icon": "", "placement": "line", "textfont": {"size": 16, "color": "#b4c4da"}},
        )
    )
    layers.append(
        _layer(base.communities, "line", color=COMMUNITY_EDGE, opacity=0.95, line={"width": 2.5, "dash": [3, 2]})
    )
    return layers


def compound_opacity(live: Live) -> list[float]:
    """Quiet compounds stay translucent (buildings show through); compounds at risk glare."""
    return [0.6 if c else 0.35 for c in live.compound_codes]


def _device_arrays(devices: Mapping[str, Device], base: BaseLayers) -> dict[str, list[Any]]:
    lon, lat, custom = [], [], []
    for d in devices.values():
        lon.append(d.lon)
        lat.append(d.lat)
        place = base.places.get(d.compound_id)
        custom.append(
            [
                d.device_id,
                KIND_LABEL.get(d.kind, d.kind),
                place.name if place else d.compound_id,
                COMMUNITIES.get(d.community, d.community),
            ]
        )
    return {"lon": lon, "lat": lat, "customdata": custom}


def _halo_arrays(live: Live) -> dict[str, list[Any]]:
    active = [h for h in live.halos if h.state == "active"]
    return {
        "halo_lon": [h.lon for h in active],
        "halo_lat": [h.lat for h in active],
        "halo_color": [SEVERITY_COLOR.get(h.severity, "#ffffff") for h in active],
        "core_lon": [h.lon for h in live.halos],
        "core_lat": [h.lat for h in live.halos],
        "core_color": [SEVERITY_COLOR.get(h.severity, "#ffffff") for h in live.halos],
        "core_custom": [
            [severity_label(h.severity), STATE_LABEL.get(h.state, h.state), h.text, h.alert_id] for h in live.halos
        ],
    }


def build_figure(base: BaseLayers, devices: Mapping[str, Device], live: Live, style_url: str) -> dict[str, Any]:
    """The whole figure as a plain dict (go.Figure validates it once here)."""
    hv = _halo_arrays(live)
    dv = _device_arrays(devices, base)
    fig = go.Figure()
    fig.add_trace(
        go.Choroplethmap(
            geojson=base.compounds,
            locations=base.compound_ids,
            z=live.compound_codes,
            zmin=0,
            zmax=4,
            colorscale=risk_colorscale(COMPOUND_NORMAL),
            showscale=False,
            marker={"opacity": compound_opacity(live), "line": {"color": "#6f93c0", "width": 1}},
            customdata=base.compound_info,
            name="小区",
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>户数 %{customdata[2]}<extra></extra>",
        )
    )
    for pts, colour, name in ((base.units, "#c9a2ff", "单位"), (base.shops, "#7fd1ff", "商铺")):
        fig.add_trace(
            go.Scattermap(
                lon=[p["lon"] for p in pts],
                lat=[p["lat"] for p in pts],
                mode="markers",
                name=name,
                marker={"size": 7, "color": colour, "opacity": 0.9},
                customdata=[[p["name"], p["category"]] for p in pts],
                hovertemplate="<b>%{customdata[0]}</b><br>" + name + " · %{customdata[1]}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scattermap(
            lon=dv["lon"],
            lat=dv["lat"],
            customdata=dv["customdata"],
            mode="markers",
            name="设备",
            marker={
                "size": 4.5,
                "color": live.device_codes,
                "cmin": 0,
                "cmax": 4,
                "colorscale": risk_colorscale(DEVICE_NORMAL),
                "opacity": 0.8,
            },
            hovertemplate="<b>%{customdata[0]}</b> %{customdata[1]}<br>%{customdata[2]} · %{customdata[3]}"
            "<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=hv["halo_lon"],
            lat=hv["halo_lat"],
            mode="markers",
            name="告警光晕",
            hoverinfo="skip",
            marker={"size": HALO_SIZES[1], "color": hv["halo_color"], "opacity": 0.38},
        )
    )
    fig.add_trace(  # a white disc under each alert dot reads as a ring on any fill colour
        go.Scattermap(
            lon=hv["core_lon"],
            lat=hv["core_lat"],
            mode="markers",
            name="告警环",
            hoverinfo="skip",
            marker={"size": 24, "color": "#ffffff", "opacity": 0.95},
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=hv["core_lon"],
            lat=hv["core_lat"],
            mode="markers",
            name="告警",
            marker={"size": 16, "color": hv["core_color"], "opacity": 1.0},
            customdata=hv["core_custom"],
            hovertemplate="<b>%{customdata[0]} · %{customdata[1]}</b><br>%{customdata[2]}<extra></extra>",
        )
    )
    names = [(COMMUNITIES.get(s, s), lon, lat) for s, (lon, lat) in base.community_centres.items()]
    fig.add_trace(
        go.Scattermap(  # last, so no other text hides the four names
            lon=[n[1] for n in names],
            lat=[n[2] for n in names],
            text=[n[0] for n in names],
            mode="text",
            name="社区",
            hoverinfo="skip",
            textfont={"size": 26, "color": TEXT},
        )
    )
    fig.update_layout(
        map={"style": style_url, **fit_view(base.bounds), "layers": base_layers(base)},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor=BG,
        showlegend=False,
        uirevision=UIREVISION,
        hoverlabel={"font": {"size": 16}},
        dragmode="pan",
    )
    out: dict[str, Any] = fig.to_plotly_json()
    return out


def patch_figure(live: Live, devices: Mapping[str, Device], base: BaseLayers, devices_changed: bool) -> Patch:
    """Only the live parts: compound risk, device colours, alert halos (and devices if re-registered)."""
    p = Patch()
    hv = _halo_arrays(live)
    p["data"][T_COMPOUNDS]["z"] = live.compound_codes
    p["data"][T_COMPOUNDS]["marker"]["opacity"] = compound_opacity(live)
    if devices_changed:
        dv = _device_arrays(devices, base)
        p["data"][T_DEVICES]["lon"] = dv["lon"]
        p["data"][T_DEVICES]["lat"] = dv["lat"]
        p["data"][T_DEVICES]["customdata"] = dv["customdata"]
    p["data"][T_DEVICES]["marker"]["color"] = live.device_codes
    p["data"][T_HALO]["lon"] = hv["halo_lon"]
    p["data"][T_HALO]["lat"] = hv["halo_lat"]
    p["data"][T_HALO]["marker"]["color"] = hv["halo_color"]
    p["data"][T_RING]["lon"] = hv["core_lon"]
    p["data"][T_RING]["lat"] = hv["core_lat"]
    p["data"][T_CORE]["lon"] = hv["core_lon"]
    p["data"][T_CORE]["lat"] = hv["core_lat"]
    p["data"][T_CORE]["marker"]["color"] = hv["core_color"]
    p["data"][T_CORE]["customdata"] = hv["core_custom"]
    return p
