"""Group rules: patterns over several devices of one place, evaluated by the periodic scan.

- `power_outage` (compound): most of its power meters read lost voltage (< `lost_v`), with or without
  its cameras going offline — one alert, the cameras' and meters' own alerts folded under it.
- `camera_sabotage` (compound): several cameras down (≥ 2 and ≥ half of them) while the compound's
  power meters report normal voltage and its other devices keep reporting — possible sabotage.
- `main_burst` (compound of the first meter): pressure collapse (< `collapse_mpa`) at two or more
  water meters within `radius_m` of each other, plus a flow spike (≥ `flow_factor` × the meter's
  usual flow) at one of them — one "main burst" alert for the area.
- `fire_risk` (building): combustible gas rising (≥ `gas_lel`) in a building while a power device in
  the same building heats (≥ `temp_c`) — red.

`folds` lists the rules whose alerts on the place's devices the group alert stands for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.validation import Record

if TYPE_CHECKING:
    from alerts.rules import Rule
    from alerts.triggers import Verdict

NAME = "group"
KEYS = frozenset({"pattern", "place", "folds", "radius_m", "params"})
PATTERNS = ("power_outage", "camera_sabotage", "main_burst", "fire_risk")
PLACE_OF = {"power_outage": "compound", "camera_sabotage": "compound", "main_burst": "compound",
            "fire_risk": "building"}
DEFAULTS: dict[str, dict[str, float]] = {
    "power_outage": {"lost_v": 100.0, "share": 0.5},
    "camera_sabotage": {"min_cameras": 2, "share": 0.5, "normal_v": 198.0},
    "main_burst": {"collapse_mpa": 0.1, "flow_factor": 2.0, "radius_m": 800.0, "min_meters": 2},
    "fire_risk": {"gas_lel": 10.0, "temp_c": 60.0},
}


def validate(rule: Rule) -> str | None:
    if rule.pattern not in PATTERNS:
        return f"pattern must be one of {PATTERNS}"
    if rule.params is not None and (not isinstance(rule.params, dict)
                                    or set(rule.params) - set(DEFAULTS[rule.pattern])):
        return f"params of {rule.pattern} are {sorted(DEFAULTS[rule.pattern])}"
    return None


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    return None, None  # evaluated by the scan, over places


def param(rule: Rule, name: str) -> float:
    return float((rule.params or {}).get(name, DEFAULTS[str(rule.pattern)][name]))


@dataclass(slots=True)
class Hit:
    """The pattern holds at one place."""

    place_id: str
    value: float
    fields: dict[str, Any]
    members: list[str] = field(default_factory=list)  # device ids it stands for


@dataclass(slots=True)
class View:
    """What the scan knows, per device: kind, place, fresh readings of the metrics groups look at."""

    by_compound: dict[str, list[Any]]  # compound -> devices
    by_building: dict[str, list[Any]]
    down: set[str]  # device ids offline or overdue
    fresh: dict[str, dict[str, float]]  # device id -> metric -> value, only for recently heard devices
    flow_usual: dict[str, float]
    compound_down: set[str]  # compounds (mostly) silent: a network cut, not a pattern


def _metres(a: Any, b: Any) -> float:
    dx = (a.lon - b.lon) * 111_320 * math.cos(math.radians((a.lat + b.lat) / 2))
    dy = (a.lat - b.lat) * 110_540
    return math.hypot(dx, dy)


def scan(rule: Rule, v: View) -> Iterable[Hit]:
    p = rule.pattern
    if p in ("power_outage", "camera_sabotage"):
        for cmp, devs in v.by_compound.items():
            if cmp in v.compound_down:
                continue
            cams = [d for d in devs if d.kind == "camera"]
            meters = [d for d in devs if d.kind == "power"]
            cams_down = [d.device_id for d in cams if d.device_id in v.down]
            volts = {d.device_id: v.fresh.get(d.device_id, {}).get("voltage_v") for d in meters}
            if p == "power_outage":
                lost = [k for k, x in volts.items() if x is not None and x < param(rule, "lost_v")]
                if meters and lost and len(lost) >= param(rule, "share") * len(meters) \
                        and (len(lost) >= 2 or len(cams_down) >= 2 or len(meters) == 1):
                    yield Hit(cmp, len(lost), {"cams": len(cams_down), "cams_total": len(cams),
                                               "meters": len(lost), "meters_total": len(meters)}, lost + cams_down)
            else:
                ok = [k for k, x in volts.items() if x is not None and x >= param(rule, "normal_v")]
                if cams and meters and len(ok) == len(meters) and len(cams_down) >= param(rule, "min_cameras") \
                        and len(cams_down) >= param(rule, "share") * len(cams):
                    yield Hit(cmp, len(cams_down), {"cams": len(cams_down), "cams_total": len(cams)}, cams_down)
    elif p == "main_burst":
        collapse = param(rule, "collapse_mpa")
        meters = [d for devs in v.by_compound.values() for d in devs if d.kind == "water"
                  and v.fresh.get(d.device_id, {}).get("pressure_mpa", 9.0) < collapse]
        meters.sort(key=lambda d: d.device_id)
        taken: set[str] = set()
        for m in meters:
            if m.device_id in taken:
                continue
            near = [x for x in meters if x.device_id not in taken and _metres(m, x) <= param(rule, "radius_m")]
            spikes = [x for x in near if v.fresh.get(x.device_id, {}).get("flow_m3h", 0.0)
                      >= param(rule, "flow_factor") * max(v.flow_usual.get(x.device_id, math.inf), 0.1)]
            if len(near) >= param(rule, "min_meters") and spikes:
                taken.update(x.device_id for x in near)
                yield Hit(m.compound_id, len(near), {"meters": len(near), "spikes": len(spikes)},
                          [x.device_id for x in near])
    elif p == "fire_risk":
        for bld, devs in v.by_building.items():
            gas = [d.device_id for d in devs if d.kind == "gas"
                   and v.fresh.get(d.device_id, {}).get("lel_pct", 0.0) >= param(rule, "gas_lel")]
            hot = [d.device_id for d in devs if d.kind == "power"
                   and v.fresh.get(d.device_id, {}).get("temp_c", -99.0) >= param(rule, "temp_c")]
            if gas and hot:
                yield Hit(bld, max(v.fresh[g]["lel_pct"] for g in gas), {"gas": len(gas), "hot": len(hot)}, gas + hot)
