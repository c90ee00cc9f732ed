"""What surrounds an alert: the units, shops and households near it (a leak by a school matters more),
and the nearest emergency resources (the valve that closes it, the repair team, hydrant, shelter, AED).

Geometry comes from geodata.spatial only, which resource matters for which alert from
geodata.resources; this module just shapes the answer for the message and the alert page.
"""

from __future__ import annotations

from typing import Any

from geodata.resources import NEED_BY_KEY, needs_for
from geodata.spatial import SpatialIndex, spatial_index

MAX_NAMED = 5


class Surroundings:
    def __init__(self, radius_m: float, index: SpatialIndex | None = None) -> None:
        self.radius_m = radius_m
        self._index = index

    def _idx(self) -> SpatialIndex:
        if self._index is None:  # built on first use: the service starts fast, layers load once
            self._index = spatial_index()
        return self._index

    def around(self, lon: float, lat: float) -> dict[str, Any]:
        near = self._idx().nearby(lon, lat, self.radius_m)
        return {
            "radius_m": self.radius_m,
            "units": [{"id": h.id, "name": h.name, "category": h.category, "distance_m": round(h.distance_m)}
                      for h in near.units[:MAX_NAMED]],
            "units_count": len(near.units),
            "shops_count": len(near.shops),
            "households": round(near.households_in_radius),
            "resources": self.resources(lon, lat),
        }

    def resources(self, lon: float, lat: float) -> list[dict[str, Any]]:
        """The nearest resource of each need (geodata.resources.NEEDS order), JSON-ready for the alert store."""
        idx = self._idx()
        loc = idx.locate(lon, lat)
        hits = idx.nearest_resources(lon, lat, (loc.building_id, loc.compound_id))
        return [{"need": h.need, "label": h.label, "id": h.id, "name": h.name, "category": h.category,
                 "distance_m": round(h.distance_m), "closes": list(h.closes_names), "closes_here": h.closes_here,
                 "phone": h.phone, "lon": h.lon, "lat": h.lat} for h in hits.values()]


def distance_text(m: float) -> str:
    """Metres under 1 km ("35 米"), else km with one decimal ("1.2 公里")."""
    r = round(m)
    return f"{r} 米" if r < 1000 else f"{m / 1000:.1f} 公里"


def resource_text(r: dict[str, Any]) -> str:
    """"燃气阀门: 35 米 (半山尚小区 东侧阀门, 关闭 半山尚小区)"; only named needs carry the name."""
    need = NEED_BY_KEY.get(str(r.get("need")))
    text = f"{r.get('label', '')}: {distance_text(float(r.get('distance_m', 0)))}"
    detail = [str(r["name"])] if need is not None and need.named and r.get("name") else []
    if r.get("closes"):
        detail.append("关闭 " + "、".join(map(str, r["closes"])))
    return f"{text} ({', '.join(detail)})" if detail else text


def resources_line(nearby: dict[str, Any] | None, kind: str) -> str:
    """The message's one line of resources that matter to an alert of this kind, nearest stored with it:
    "最近燃气阀门: 35 米 (半山尚小区 东侧阀门, 关闭 半山尚小区); 燃气抢修队: 1.2 公里; ...". "" when none."""
    got = {str(r.get("need")): r for r in (nearby or {}).get("resources") or []}
    parts = [resource_text(got[n.key]) for n in needs_for(kind) if n.key in got]
    return "最近" + "; ".join(parts) if parts else ""


def summary(nearby: dict[str, Any]) -> str:
    """A short Chinese line for the alert message, e.g. "200 米内: 岩岭小学(学校)等 2 家单位, 约 830 户"."""
    parts = []
    if nearby["units"]:
        first = nearby["units"][0]
        more = f"等 {nearby['units_count']} 家单位" if nearby["units_count"] > 1 else ""
        name, cat = str(first["name"]), str(first.get("category") or "")
        parts.append(f"{name}({cat}){more}" if cat and cat not in name else f"{name}{more}")  # no "X食堂(食堂)"
    if nearby["households"]:
        parts.append(f"约 {nearby['households']} 户")
    if not parts:
        return ""
    return f"{nearby['radius_m']:g} 米内: " + ", ".join(parts)
