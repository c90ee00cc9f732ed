"""What surrounds an alert: the units, shops and households near it (a leak by a school matters more).

Geometry comes from geodata.spatial only; this module just shapes the answer for the message.
"""

from __future__ import annotations

from typing import Any

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
        }


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
