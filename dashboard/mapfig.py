"""The one map (综合一张图): a MapLibre figure that needs nothing from the internet.

Offline-map facts checked on this machine (plotly's MapLibre, no tiles): a local style.json whose
glyph URL 404s (MapLibre then draws text with local fonts), `symbol.icon=""`, circle markers only,
community labels drawn last, and live data changed only through `Patch()` on fixed trace indices.

Devices are two traces. The registry's devices are one static, single-colour trace that MapLibre
clusters (a bubble with a count at district zoom, single dots from CLUSTER_MAXZOOM on), so thousands of
overlapping dots neither hide each other nor cost a draw; past DEVICE_CAP devices it becomes one marker
per compound. A device in alert or offline is drawn again, never clustered, in the small state trace on
top: a red device can never be folded into a green bubble, and a refresh only resends that short list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from dash import Patch

from core.contract import COMMUNITIES, Device
from core.timebase import local_time
from dashboard.geo import BaseLayers
from dashboard.live import OFFLINE_CODE, Live
from dashboard.theme import (
    BG,
    BUILDING,
    COMMUNITY_EDGE,
    COMMUNITY_FILL,
    COMPOUND_NORMAL,
    DEVICE_CLUSTER,
    DEVICE_NORMAL,
    DEVICE_OFFLINE,
    KIND_LABEL,
    ROAD,
    SEVERITY_COLOR,
    STATE_LABEL,
    TEXT,
    WATER,
    risk_colorscale,
    severity_label,
)

# Trace indices: Patch() addresses traces by position, so the order is fixed here (assets/clientside.js
# reads the same numbers from layout.meta.traces).
T_COMPOUNDS, T_UNITS, T_SHOPS, T_DEVICES, T_DEVSTATE, T_HALO, T_RING, T_CORE, T_RESOLVED, T_LABELS = range(10)
TRACES = {"compounds": T_COMPOUNDS, "units": T_UNITS, "shops": T_SHOPS, "devices": T_DEVICES,
          "devstate": T_DEVSTATE, "halo": T_HALO, "ring": T_RING, "core": T_CORE, "resolved": T_RESOLVED,
          "labels": T_LABELS}
HALO_SIZES = (44, 84)  # the pulse toggles the halo between these (clientside)
UIREVISION = "onemap"  # keeps the operator's pan/zoom across every update
RING_ACTIVE, RING_ACKED = "#ffffff", "#55657d"  # an acknowledged alert loses its white ring and shrinks
CORE_ACTIVE, CORE_ACKED = 16, 11
COMPOUND_LABEL_MINZOOM = 15.2  # compound names appear once they are readable
# More registered devices than this and the device trace is one marker per compound: 12,000 single
# devices make ~0.7 MB of figure JSON (the goal is < 1 MB) and are clustered anyway at district zoom.
DEVICE_CAP = 12_000
# Devices in alert or offline drawn singly (worst first). A whole community going dark is one
# community_silent alert on the map; past this many grey dots more add nothing but bytes.
STATE_CAP = 4_000
CLUSTER_MAXZOOM = 16.5  # from here on every device is its own dot (buildings are readable)
COORD_DIGITS = 6  # ~0.1 m: enough for a map, and a third fewer bytes than full floats


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


LAYER_NAMES = ("community", "water", "buildings", "roads", "roadnames", "borders", "compoundnames")


def compound_label_points(base: BaseLayers) -> dict[str, Any]:
    feats = [
        {"type": "Feature", "properties": {"name": p.name},
         "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]}}
        for cid in base.compound_ids
        if (p := base.places.get(cid)) is not None
    ]
    return {"type": "FeatureCollection", "features": feats}


def base_layers(base: BaseLayers) -> list[dict[str, Any]]:
    """The light basemap: community tints, water, buildings, roads (with names), borders, compound names.

    The community tints come first (one layer per community); `layer_index` names the others."""
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
    layers.append(  # compound names, drawn once zoomed in far enough to read them (no icon: see above)
        _layer(
            compound_label_points(base),
            "symbol",
            color=TEXT,
            minzoom=COMPOUND_LABEL_MINZOOM,
            below="",
            symbol={"text": "{name}", "icon": "", "placement": "point",
                    "textfont": {"size": 18, "color": "#f2f6fc"}, "textposition": "bottom center"},
        )
    )
    return layers


def layer_index(base: BaseLayers) -> dict[str, int]:
    """Where each named basemap layer sits in layout.map.layers (for the clientside toggles)."""
    n = len(base.communities["features"])
    return {"water": n, "buildings": n + 1, "roads": n + 2, "roadnames": n + 3, "borders": n + 4,
            "compoundnames": n + 5}


def compound_opacity(live: Live) -> list[float]:
    """Quiet compounds stay translucent (buildings show through); compounds at risk glare."""
    return [0.6 if c else 0.35 for c in live.compound_codes]


def device_colorscale() -> list[list[float | str]]:
    """Codes 0 (reporting, no alert), 1..4 (blue..red alert), 5 (offline or silent)."""
    colours = [DEVICE_NORMAL] + [SEVERITY_COLOR[s] for s in ("blue", "yellow", "orange", "red")] + [DEVICE_OFFLINE]
    scale: list[list[float | str]] = []
    for i, c in enumerate(colours):
        scale.append([i / 6, c])
        scale.append([(i + 1) / 6, c])
    return scale


def _r(x: float) -> float:
    return round(x, COORD_DIGITS)


def _device_arrays(devices: Mapping[str, Device], base: BaseLayers) -> dict[str, Any]:
    """The static device trace: every device (customdata [id, kind label]), or past DEVICE_CAP one
    marker per compound (customdata [compound id, summary]) that opens the compound's page."""
    if len(devices) <= DEVICE_CAP:
        return {
            "lon": [_r(d.lon) for d in devices.values()],
            "lat": [_r(d.lat) for d in devices.values()],
            "customdata": [[d.device_id, KIND_LABEL.get(d.kind, d.kind)] for d in devices.values()],
            "meta": {"agg": False, "n": len(devices)},
        }
    per: dict[str, dict[str, int]] = {}
    for d in devices.values():
        kinds = per.setdefault(d.compound_id, {})
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    lon, lat, custom = [], [], []
    for cid, kinds in per.items():
        place = base.places.get(cid)
        if place is None:
            continue
        lon.append(_r(place.lon))
        lat.append(_r(place.lat))
        parts = " ".join(f"{KIND_LABEL.get(k, k)}{n}" for k, n in sorted(kinds.items()))
        custom.append([cid, f"{place.name} · 设备 {sum(kinds.values())} 台（{parts}）"])
    return {"lon": lon, "lat": lat, "customdata": custom, "meta": {"agg": True, "n": len(devices)}}


def device_hovertemplate(agg: bool) -> str:
    if agg:
        return "<b>%{customdata[1]}</b><br>点击查看小区<extra></extra>"
    return "<b>%{customdata[1]} %{customdata[0]}</b><br>点击查看设备<extra></extra>"


STATE_TEXT = {1: "四级告警", 2: "三级告警", 3: "二级告警", 4: "一级告警", OFFLINE_CODE: "离线/无数据"}


def _state_arrays(live: Live, devices: Mapping[str, Device]) -> dict[str, Any]:
    """Devices in alert or offline: the worst last (drawn on top), at most STATE_CAP, alerts before grey."""
    order = sorted(live.device_sparse.items(), key=lambda kv: (kv[1] != OFFLINE_CODE, kv[1], kv[0]))
    if len(order) > STATE_CAP:
        order = order[-STATE_CAP:]
    lon, lat, codes, custom = [], [], [], []
    for did, code in order:
        d = devices.get(did)
        if d is None:
            continue
        lon.append(_r(d.lon))
        lat.append(_r(d.lat))
        codes.append(code)
        custom.append([did, KIND_LABEL.get(d.kind, d.kind), STATE_TEXT.get(code, "")])
    return {"lon": lon, "lat": lat, "color": codes, "customdata": custom}


def _halo_arrays(live: Live) -> dict[str, list[Any]]:
    active = [h for h in live.halos if h.state == "active"]
    return {
        "halo_lon": [h.lon for h in active],
        "halo_lat": [h.lat for h in active],
        "halo_color": [SEVERITY_COLOR.get(h.severity, "#ffffff") for h in active],
        "core_lon": [h.lon for h in live.halos],
        "core_lat": [h.lat for h in live.halos],
        "core_color": [SEVERITY_COLOR.get(h.severity, "#ffffff") for h in live.halos],
        "core_size": [CORE_ACTIVE if h.state == "active" else CORE_ACKED for h in live.halos],
        "ring_color": [RING_ACTIVE if h.state == "active" else RING_ACKED for h in live.halos],
        "ring_size": [24 if h.state == "active" else 17 for h in live.halos],
        "core_custom": [
            [severity_label(h.severity), STATE_LABEL.get(h.state, h.state), h.text, h.alert_id] for h in live.halos
        ],
    }


def _resolved_arrays(live: Live) -> dict[str, list[Any]]:
    by_id = {a.alert_id: a for a in live.resolved}
    custom = []
    for h in live.resolved_halos:
        a = by_id[h.alert_id]
        how = f"{a.resolved_by} 解除" if a.resolved_by else "条件恢复，自动解除"
        custom.append([severity_label(h.severity), h.text, f"{local_time(a.resolved_at)} {how}", h.alert_id])
    return {
        "lon": [h.lon for h in live.resolved_halos],
        "lat": [h.lat for h in live.resolved_halos],
        "color": [SEVERITY_COLOR.get(h.severity, "#ffffff") for h in live.resolved_halos],
        "custom": custom,
    }


def build_figure(base: BaseLayers, devices: Mapping[str, Device], live: Live, style_url: str) -> dict[str, Any]:
    """The whole figure as a plain dict (go.Figure validates it once here)."""
    hv = _halo_arrays(live)
    rv = _resolved_arrays(live)
    dv = _device_arrays(devices, base)
    sv = _state_arrays(live, devices)
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
            customdata=[[*info, cid] for info, cid in zip(base.compound_info, base.compound_ids, strict=True)],
            name="小区",
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>户数 %{customdata[2]}<br>点击查看详情"
            "<extra></extra>",
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
            meta=dv["meta"],
            mode="markers",
            name="设备",
            marker={"size": 12 if dv["meta"]["agg"] else 6, "color": DEVICE_NORMAL, "opacity": 0.85},
            # MapLibre's own clustering (in its worker): a bubble with the count until the zoom where
            # single devices are readable. Radii step with the count (2–19, 20–99, 100+); translucent, so
            # a compound's risk colour shows through.
            cluster=None if dv["meta"]["agg"] else {
                "enabled": True, "maxzoom": CLUSTER_MAXZOOM, "color": DEVICE_CLUSTER, "opacity": 0.6,
                "size": [9, 12, 15], "step": [-1, 20, 100]},
            hovertemplate=device_hovertemplate(dv["meta"]["agg"]),
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=sv["lon"],
            lat=sv["lat"],
            customdata=sv["customdata"],
            mode="markers",
            name="设备状态",
            marker={
                "size": 9,
                "color": sv["color"],
                "cmin": -0.5,  # code k lands in the middle of its step
                "cmax": 5.5,
                "colorscale": device_colorscale(),
                "opacity": 0.95,
            },
            hovertemplate="<b>%{customdata[1]} %{customdata[0]}</b><br>%{customdata[2]} · 点击查看设备<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=hv["halo_lon"],
            lat=hv["halo_lat"],
            mode="markers",
            name="告警光晕",
            hoverinfo="skip",
            # A steady glow; the pulse is an HTML ring over it (assets/clientside.js placeHalos).
            marker={"size": HALO_SIZES[0], "color": hv["halo_color"], "opacity": 0.35},
        )
    )
    fig.add_trace(  # a white disc under each active alert dot reads as a ring on any fill colour
        go.Scattermap(
            lon=hv["core_lon"],
            lat=hv["core_lat"],
            mode="markers",
            name="告警环",
            hoverinfo="skip",
            marker={"size": hv["ring_size"], "color": hv["ring_color"], "opacity": 0.95},
        )
    )
    fig.add_trace(
        go.Scattermap(
            lon=hv["core_lon"],
            lat=hv["core_lat"],
            mode="markers",
            name="告警",
            marker={"size": hv["core_size"], "color": hv["core_color"], "opacity": 1.0},
            customdata=hv["core_custom"],
            hovertemplate="<b>%{customdata[0]} · %{customdata[1]}</b><br>%{customdata[2]}<extra></extra>",
        )
    )
    fig.add_trace(  # resolved in the last minutes: faded, with who or what cleared them
        go.Scattermap(
            lon=rv["lon"],
            lat=rv["lat"],
            mode="markers",
            name="近期解除",
            marker={"size": 16, "color": rv["color"], "opacity": 0.45},
            customdata=rv["custom"],
            hovertemplate="<b>%{customdata[0]} · 已解除</b><br>%{customdata[1]}<br>%{customdata[2]}<extra></extra>",
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
        # For the clientside code: the district's bounds (fit to the real size), trace and layer numbers.
        meta={"bounds": list(base.bounds), "traces": TRACES, "layers": layer_index(base), "kinds": KIND_LABEL},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor=BG,
        showlegend=False,
        uirevision=UIREVISION,
        hoverlabel={"font": {"size": 16}},
        dragmode="pan",
    )
    out: dict[str, Any] = fig.to_plotly_json()
    return out


def _patch_alerts(p: Patch, live: Live) -> None:
    hv = _halo_arrays(live)
    rv = _resolved_arrays(live)
    p["data"][T_HALO]["lon"] = hv["halo_lon"]
    p["data"][T_HALO]["lat"] = hv["halo_lat"]
    p["data"][T_HALO]["marker"]["color"] = hv["halo_color"]
    p["data"][T_RING]["lon"] = hv["core_lon"]
    p["data"][T_RING]["lat"] = hv["core_lat"]
    p["data"][T_RING]["marker"]["color"] = hv["ring_color"]
    p["data"][T_RING]["marker"]["size"] = hv["ring_size"]
    p["data"][T_CORE]["lon"] = hv["core_lon"]
    p["data"][T_CORE]["lat"] = hv["core_lat"]
    p["data"][T_CORE]["marker"]["color"] = hv["core_color"]
    p["data"][T_CORE]["marker"]["size"] = hv["core_size"]
    p["data"][T_CORE]["customdata"] = hv["core_custom"]
    p["data"][T_RESOLVED]["lon"] = rv["lon"]
    p["data"][T_RESOLVED]["lat"] = rv["lat"]
    p["data"][T_RESOLVED]["marker"]["color"] = rv["color"]
    p["data"][T_RESOLVED]["customdata"] = rv["custom"]


def _patch_state(p: Patch, live: Live, devices: Mapping[str, Device]) -> None:
    sv = _state_arrays(live, devices)
    p["data"][T_DEVSTATE]["lon"] = sv["lon"]
    p["data"][T_DEVSTATE]["lat"] = sv["lat"]
    p["data"][T_DEVSTATE]["customdata"] = sv["customdata"]
    p["data"][T_DEVSTATE]["marker"]["color"] = sv["color"]


def patch_figure(live: Live, devices: Mapping[str, Device], base: BaseLayers, devices_changed: bool) -> Patch:
    """Only the live parts: compound risk, devices in alert / offline, alert halos (and the registry's
    devices if it was re-registered)."""
    p = Patch()
    p["data"][T_COMPOUNDS]["z"] = live.compound_codes
    p["data"][T_COMPOUNDS]["marker"]["opacity"] = compound_opacity(live)
    if devices_changed:
        dv = _device_arrays(devices, base)
        for key in ("lon", "lat", "customdata", "meta"):
            p["data"][T_DEVICES][key] = dv[key]
        p["data"][T_DEVICES]["hovertemplate"] = device_hovertemplate(dv["meta"]["agg"])
    _patch_state(p, live, devices)
    _patch_alerts(p, live)
    return p


def patch_since(old: Live | None, live: Live, devices: Mapping[str, Device]) -> Patch:
    """What changed between the picture a browser has (`old`, same registry) and `live`.

    The registry's device trace never changes here; the devices in alert or offline are a short list
    sent whole when it changed (a refresh with 100,000 devices costs that list, not the 100,000);
    compound colours and the alert dots are small and go whole, but only when they changed."""
    p = Patch()
    if old is None or old.compound_codes != live.compound_codes:
        p["data"][T_COMPOUNDS]["z"] = live.compound_codes
        p["data"][T_COMPOUNDS]["marker"]["opacity"] = compound_opacity(live)
    if old is None or old.device_sparse != live.device_sparse:
        _patch_state(p, live, devices)
    if old is None or old.halos != live.halos or old.resolved_halos != live.resolved_halos or \
            [(a.alert_id, a.resolved_by, a.resolved_at) for a in old.resolved] != \
            [(a.alert_id, a.resolved_by, a.resolved_at) for a in live.resolved]:
        _patch_alerts(p, live)
    return p
