"""The one map (综合一张图): a MapLibre figure that needs nothing from the internet.

Offline-map facts checked on this machine (plotly's MapLibre, no tiles): a local style.json whose
glyph URL 404s (MapLibre then draws text with local fonts), `symbol.icon=""`, circle markers only,
community labels drawn last, and live data changed only through `Patch()` on fixed trace indices.

Devices are two traces. The registry's devices are one static, single-colour trace that MapLibre
clusters (a bubble with a count at district zoom, single dots from CLUSTER_MAXZOOM on), so thousands of
overlapping dots neither hide each other nor cost a draw; past DEVICE_CAP devices it becomes one marker
per compound. A device in alert or offline is drawn again, never clustered, in the small state trace on
top: a red device can never be folded into a green bubble.

Everything live (compound risk, devices in alert or offline, alert dots, recently resolved ones) is not
in the plotly figure at all: it is a small JSON (`live_layers`) that assets/clientside.js draws into its
own MapLibre sources. Any change to a plotly map trace re-plots every trace of the map (seconds of
software WebGL on a wall PC without a GPU, during which the page does not answer); a new alert now
costs one `setData` on a few tiny sources. The figure changes only when the registry or the GIS layers do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from dash import Patch

from core.contract import COMMUNITIES, Device
from core.severity import SEVERITIES, rank
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
    RESOURCE_STYLE,
    ROAD,
    SEVERITY_COLOR,
    STATE_LABEL,
    TEXT,
    WATER,
    severity_label,
)

# Trace indices: fixed here (assets/clientside.js reads the same numbers from layout.meta.traces).
T_COMPOUNDS, T_UNITS, T_SHOPS, T_DEVICES, T_RESOURCES, T_LABELS = range(6)
TRACES = {"compounds": T_COMPOUNDS, "units": T_UNITS, "shops": T_SHOPS, "devices": T_DEVICES,
          "resources": T_RESOURCES, "labels": T_LABELS}
UIREVISION = "onemap"  # keeps the operator's pan/zoom across every update
COMPOUND_LABEL_MINZOOM = 15.2  # compound names appear once they are readable
# More registered devices than this and the device trace is one marker per compound: 12,000 single
# devices make ~0.7 MB of figure JSON (the goal is < 1 MB) and are clustered anyway at district zoom.
DEVICE_CAP = 12_000
# Devices in alert or offline drawn singly (worst first). A whole community going dark is one
# community_silent alert on the map; past this many grey dots more add nothing but bytes.
STATE_CAP = 4_000
CLUSTER_MAXZOOM = 16  # past this zoom every device is its own dot (MapLibre takes whole zooms)
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


# Community tint opacity: alone, and over the street's own basemap (which it should tint, not hide);
# assets/clientside.js switches between them with the 底图 toggle (layout.meta.tint).
COMMUNITY_TINT = (0.9, 0.3)
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
        layers.append(_layer(one, "fill", color=COMMUNITY_FILL.get(slug, "#1b3047"), opacity=COMMUNITY_TINT[0]))
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


# Device / compound codes (dashboard.live: 0 quiet, the severity's rank, OFFLINE_CODE) to colours and words.
CODE_COLOR = {0: DEVICE_NORMAL, **{rank(s): SEVERITY_COLOR[s] for s in SEVERITIES}, OFFLINE_CODE: DEVICE_OFFLINE}
STATE_TEXT = {**{rank(s): f"{severity_label(s)}告警" for s in SEVERITIES}, OFFLINE_CODE: "离线/无数据"}


def _state_rows(live: Live, devices: Mapping[str, Device]) -> list[list[Any]]:
    """Devices in alert or offline, [lon, lat, colour, id, kind label, state]: the worst last (drawn on
    top), at most STATE_CAP, alerts kept before grey ones."""
    order = sorted(live.device_sparse.items(), key=lambda kv: (kv[1] != OFFLINE_CODE, kv[1], kv[0]))
    if len(order) > STATE_CAP:
        order = order[-STATE_CAP:]
    rows = []
    for did, code in order:
        d = devices.get(did)
        if d is not None:
            rows.append([_r(d.lon), _r(d.lat), CODE_COLOR.get(code, DEVICE_OFFLINE), did,
                         KIND_LABEL.get(d.kind, d.kind), STATE_TEXT.get(code, "")])
    return rows


SAME_SPOT_DIGITS = 5  # alerts within ~1 m of each other are one dot (one device, or one compound's centre)
SPOT_LINES = 3  # the others at a spot named in its hover label


def _alert_rows(live: Live) -> list[list[Any]]:
    """One dot per spot, [lon, lat, colour, active, severity, state, text, alert id, n, others]: alerts at
    the same spot (two rules on one device, a compound alert at its centre) would hide each other, so
    the spot shows its worst alert, a count when there are more, and the others in its label. It pulses
    while any of them is still unacknowledged. Worst spot last (drawn on top)."""
    spots: dict[tuple[float, float], list[Any]] = {}
    last: dict[tuple[float, float], int] = {}  # where a spot's worst alert stands in live.halos
    for i, h in enumerate(live.halos):  # worst last
        key = (round(h.lon, SAME_SPOT_DIGITS), round(h.lat, SAME_SPOT_DIGITS))
        spots.setdefault(key, []).append(h)
        last[key] = i
    rows = []
    for group in (spots[k] for k in sorted(spots, key=last.__getitem__)):
        top = group[-1]
        others = [f"{severity_label(h.severity)} {STATE_LABEL.get(h.state, h.state)} {h.text}"
                  for h in reversed(group[:-1])]
        if len(others) > SPOT_LINES:
            others = [*others[:SPOT_LINES], f"…另有 {len(others) - SPOT_LINES} 条"]
        rows.append([_r(top.lon), _r(top.lat), SEVERITY_COLOR.get(top.severity, "#ffffff"),
                     int(any(h.state == "active" for h in group)), severity_label(top.severity),
                     STATE_LABEL.get(top.state, top.state), top.text, top.alert_id, len(group), others])
    return rows


def live_layers(live: Live, devices: Mapping[str, Device], base: BaseLayers) -> dict[str, Any]:
    """The live part of the one map, for assets/clientside.js (`scLive`): compound risk colours, devices
    in alert or offline, alert dots (worst last, so on top; acknowledged ones without the white ring and
    pulse) and the recently resolved ones, faded, with who or what cleared them."""
    alerts = _alert_rows(live)
    by_id = {a.alert_id: a for a in live.resolved}
    resolved = []
    for h in live.resolved_halos:
        a = by_id[h.alert_id]
        how = f"{a.resolved_by} 解除" if a.resolved_by else "条件恢复，自动解除"
        resolved.append([_r(h.lon), _r(h.lat), SEVERITY_COLOR.get(h.severity, "#ffffff"), severity_label(h.severity),
                         h.text, f"{local_time(a.resolved_at)} {how}", h.alert_id])
    return {
        "risk": {cid: CODE_COLOR[code]
                 for cid, code in zip(base.compound_ids, live.compound_codes, strict=True) if code},
        "devices": _state_rows(live, devices),
        "alerts": alerts,
        "resolved": resolved,
    }


def build_figure(base: BaseLayers, devices: Mapping[str, Device], style_url: str) -> dict[str, Any]:
    """The static figure as a plain dict (go.Figure validates it once here); `live_layers` is drawn on it."""
    dv = _device_arrays(devices, base)
    fig = go.Figure()
    fig.add_trace(
        go.Choroplethmap(  # compounds in their quiet colour; the risk colours are a live layer over them
            geojson=base.compounds,
            locations=base.compound_ids,
            z=[0] * len(base.compound_ids),
            zmin=0,
            zmax=1,
            colorscale=[[0, COMPOUND_NORMAL], [1, COMPOUND_NORMAL]],
            showscale=False,
            marker={"opacity": 0.35, "line": {"color": "#6f93c0", "width": 1}},
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
    res = base.resources
    fig.add_trace(
        go.Scattermap(  # valves, hydrants, teams, shelters, AEDs: over the device bubbles, under the names
            lon=[_r(r["lon"]) for r in res],
            lat=[_r(r["lat"]) for r in res],
            mode="markers",
            name="应急资源",
            marker={"size": [RESOURCE_STYLE.get(r["category"], ("#ffffff", 6))[1] for r in res],
                    "color": [RESOURCE_STYLE.get(r["category"], ("#ffffff", 6))[0] for r in res], "opacity": 0.95},
            customdata=[[r["name"], r["label"], r["detail"], r["id"]] for r in res],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>%{customdata[2]}<extra></extra>",
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
        meta={"bounds": list(base.bounds), "traces": TRACES, "layers": layer_index(base), "kinds": KIND_LABEL,
              "tint": COMMUNITY_TINT},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor=BG,
        showlegend=False,
        uirevision=UIREVISION,
        hoverlabel={"font": {"size": 16}},
        dragmode="pan",
    )
    out: dict[str, Any] = fig.to_plotly_json()
    return out


def registry_patch(devices: Mapping[str, Device], base: BaseLayers) -> Patch:
    """The registry changed (devices added, moved or removed): only the device trace is resent."""
    p = Patch()
    dv = _device_arrays(devices, base)
    for key in ("lon", "lat", "customdata", "meta"):
        p["data"][T_DEVICES][key] = dv[key]
    p["data"][T_DEVICES]["hovertemplate"] = device_hovertemplate(dv["meta"]["agg"])
    return p
