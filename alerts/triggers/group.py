"""Group rules: patterns over several devices of one place, decided by the periodic scan from the
last fresh readings of a few metrics (kept by `track` as messages arrive) and who is down.

- `power_outage` (compound): most of its power meters read lost voltage (< `lost_v`), with or without
  its cameras going offline — one alert, the cameras' and meters' own alerts folded under it.
- `camera_sabotage` (compound): several cameras down (≥ 2 and ≥ half of them) while the compound's
  power meters report normal voltage and its other devices keep reporting — possible sabotage.
- `main_burst` (compound of the first meter): pressure collapse (< `collapse_mpa`) at two or more
  water meters within `radius_m` of each other, plus a flow spike (≥ `flow_factor` × the meter's
  usual flow) at one of them — one "main burst" alert for the area.
- `fire_risk` (building): combustible gas rising (≥ `gas_lel`) in a building while a power device in
  the same building heats (≥ `temp_c`) — red.

`folds` lists the rules whose alerts on the place's devices (and on the pattern's members, which
may lie in neighbouring compounds) the group alert stands for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from alerts.triggers import Act, Finding, ScanView, Subject
from core.validation import Record, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

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


def place_of(rule: Rule) -> str:
    """What kind of place the rule's alert is about (its subject is that place's id)."""
    return PLACE_OF.get(rule.pattern or "", "compound")


def param(rule: Rule, name: str) -> float:
    return float((rule.params or {}).get(name, DEFAULTS[str(rule.pattern)][name]))


@dataclass(slots=True)
class Hit:
    """The pattern holds at one place."""

    place_id: str
    value: float
    fields: dict[str, Any]
    members: list[str] = field(default_factory=list)  # device ids it stands for


# What the engine keeps an eye on as readings arrive, so a scan looks only at candidate places:
# flag -> (metric, comparison, the pattern and parameter giving the level).
FLAGS: dict[str, tuple[str, str, str, str]] = {
    "volt_lost": ("voltage_v", "<", "power_outage", "lost_v"),
    "pressure_collapse": ("pressure_mpa", "<", "main_burst", "collapse_mpa"),
    "gas_rising": ("lel_pct", ">=", "fire_risk", "gas_lel"),
    "heating": ("temp_c", ">=", "fire_risk", "temp_c"),
}


# What group rules look at, per kind: the last fresh reading of these metrics.
TRACKED = {"power": ("voltage_v", "temp_c"), "water": ("pressure_mpa", "flow_m3h"), "gas": ("lel_pct",)}
USUAL_MIN_MPA = 0.14  # the usual flow of a water meter is learnt while its pressure is normal


def levels(rules: Iterable[Rule]) -> dict[str, float]:
    """flag -> level, from the group rules present (their params or the defaults)."""
    by_pattern = {r.pattern: r for r in rules}
    return {flag: param(by_pattern[pat], name) for flag, (_, _, pat, name) in FLAGS.items() if pat in by_pattern}


@dataclass(slots=True)
class View:
    """What the scan knows: devices by id, which are down, fresh readings, and the candidates."""

    dev_of: Mapping[str, Any]
    by_compound: Mapping[str, list[Any]]
    by_building: Mapping[str, list[Any]]
    is_down: Callable[[str], bool]
    readings: Mapping[str, Mapping[str, float]]
    flow_usual: Mapping[str, float]
    compound_down: set[str]  # compounds (mostly) silent: a network cut, not a pattern
    flagged: Mapping[str, set[str]]  # flag -> device ids
    cams_down_compounds: set[str]  # compounds with at least two cameras down

    def fresh(self, dev_id: str, metric: str) -> float | None:
        if self.is_down(dev_id):
            return None
        return self.readings.get(dev_id, {}).get(metric)


def _metres(a: Any, b: Any) -> float:
    dx = (a.lon - b.lon) * 111_320 * math.cos(math.radians((a.lat + b.lat) / 2))
    dy = (a.lat - b.lat) * 110_540
    return math.hypot(dx, dy)


@dataclass(slots=True)
class Memory:
    """What the group rules keep of the messages between scans."""

    readings: dict[str, dict[str, float]] = field(default_factory=dict)  # device -> tracked metric -> last value
    flow_usual: dict[str, float] = field(default_factory=dict)  # water meter -> usual flow (EWMA)
    flagged: dict[str, set[str]] = field(default_factory=dict)  # flag -> device ids past its level
    levels: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # flag -> (metric, op, level)
    places: tuple[Any, ...] = ()  # (liveness, devices by compound, by building), built once per registry


def memory(rules: list[Rule], old: Memory | None) -> Memory:
    """The memory for a (re)loaded rule set: the readings carry on, the flags start again."""
    m = old or Memory()
    m.levels = {f: (FLAGS[f][0], FLAGS[f][1], x) for f, x in levels(rules).items()}
    m.flagged = {f: set() for f in FLAGS}
    return m


def track(m: Memory, rec: Record) -> None:
    if type(rec) is not Telemetry:
        return
    tracked = TRACKED.get(rec.device.kind)
    if not tracked:
        return
    metrics = rec.metrics
    got = {k: float(metrics[k]) for k in tracked if k in metrics}
    if not got:
        return
    dev_id = rec.device.device_id
    r = m.readings.get(dev_id)
    if r is None:
        r = m.readings[dev_id] = {}
    r.update(got)
    for flag, (metric, op, level) in m.levels.items():
        v = got.get(metric)
        if v is not None:
            if (v < level) if op == "<" else (v >= level):
                m.flagged[flag].add(dev_id)
            else:
                m.flagged[flag].discard(dev_id)
    flow, pressure = got.get("flow_m3h"), r.get("pressure_mpa")
    if flow is not None and pressure is not None and pressure >= USUAL_MIN_MPA:
        u = m.flow_usual.get(dev_id)
        m.flow_usual[dev_id] = flow if u is None else 0.95 * u + 0.05 * flow


def view_of(m: Memory, view: ScanView) -> View:
    """The group rules' view of one scan: the snapshot, plus the readings and the candidates."""
    live, sc = view.live, view.scan
    if not m.places or m.places[0] is not live:
        by_c: dict[str, list[Any]] = {}
        by_b: dict[str, list[Any]] = {}
        for d in live.devices:
            by_c.setdefault(d.compound_id, []).append(d)
            b = d.extra.get("building_id")
            if b:
                by_b.setdefault(str(b), []).append(d)
        m.places = (live, by_c, by_b)
    _, by_c, by_b = m.places
    down, index = sc.down, live.index

    def is_down(dev_id: str) -> bool:
        i = index.get(dev_id)
        return i is None or bool(down[i])

    cam_down = np.bincount(live.compound_of[down & live.kind_mask("camera")], minlength=len(live.compounds))
    cams = {live.compounds[int(i)] for i in np.nonzero(cam_down >= 2)[0]}
    cdown = {live.compounds[int(i)] for i in np.nonzero(sc.compound_down)[0]}
    return View(live.registry, by_c, by_b, is_down, m.readings, m.flow_usual, cdown, m.flagged, cams)


def _subject(place_id: str, members: list[Any]) -> Subject:
    first = members[0]
    return Subject(place_id, first.community, first.compound_id, "", "",
                   float(np.mean([d.lon for d in members])), float(np.mean([d.lat for d in members])))


def scan(rules: list[Rule], view: ScanView) -> Iterable[Finding]:
    from alerts.message import place_label  # alerts.message reads rule titles: imported once rules are

    m = view.memory_of(NAME) or memory(rules, None)
    v = view_of(m, view)
    live = view.live
    for rule in rules:
        found = {h.place_id: h for h in hits(rule, v)}
        for place_id, h in found.items():
            members = [live.devices[live.index[d]] for d in h.members if d in live.index]
            if not members:
                yield Finding(rule, place_id, Act.WAIT, members=tuple(h.members))
                continue
            first = members[0]
            place = PLACE_OF[rule.pattern or ""]
            msg = rule.render(value=h.value, place=place_label(place_id) if place != "building" else
                              place_label(first.compound_id, place_id), **h.fields)
            yield Finding(rule, place_id, Act.RAISE, h.value, msg, place=_subject(place_id, members),
                          members=tuple(h.members))
        if view.settled:
            for key in view.open:
                if key[0] == rule.name and key[1] not in found:
                    yield Finding(rule, key[1], Act.CLEAR)


def hits(rule: Rule, v: View) -> Iterable[Hit]:
    """Where the rule's pattern holds now."""
    p = rule.pattern
    if p in ("power_outage", "camera_sabotage"):
        if p == "power_outage":
            places = {v.dev_of[d].compound_id for d in v.flagged.get("volt_lost", ()) if d in v.dev_of}
        else:
            places = set(v.cams_down_compounds)
        for cmp in sorted(places - v.compound_down):
            devs = v.by_compound.get(cmp, [])
            cams = [d for d in devs if d.kind == "camera"]
            meters = [d for d in devs if d.kind == "power"]
            cams_down = [d.device_id for d in cams if v.is_down(d.device_id)]
            volts = {d.device_id: v.fresh(d.device_id, "voltage_v") for d in meters}
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
        meters = sorted((v.dev_of[d] for d in v.flagged.get("pressure_collapse", ()) if d in v.dev_of
                         and (v.fresh(d, "pressure_mpa") or 9.0) < collapse), key=lambda d: d.device_id)
        taken: set[str] = set()
        for m in meters:
            if m.device_id in taken:
                continue
            # A burst is judged within one community (a community's engine sees only its own meters:
            # alerts/partition.py), even where a neighbouring community's meters lie within the radius.
            near = [x for x in meters if x.device_id not in taken and x.community == m.community
                    and _metres(m, x) <= param(rule, "radius_m")]
            spikes = [x for x in near if (v.fresh(x.device_id, "flow_m3h") or 0.0)
                      >= param(rule, "flow_factor") * max(v.flow_usual.get(x.device_id, math.inf), 0.1)]
            if len(near) >= param(rule, "min_meters") and spikes:
                taken.update(x.device_id for x in near)
                yield Hit(m.compound_id, len(near), {"meters": len(near), "spikes": len(spikes)},
                          [x.device_id for x in near])
    elif p == "fire_risk":
        def bld(d: str) -> str:
            return str(v.dev_of[d].extra.get("building_id", "")) if d in v.dev_of else ""

        gas_b = {bld(d) for d in v.flagged.get("gas_rising", ()) if not v.is_down(d)} - {""}
        hot_b = {bld(d) for d in v.flagged.get("heating", ()) if not v.is_down(d)} - {""}
        for b in sorted(gas_b & hot_b):
            devs = v.by_building.get(b, [])
            gas = [d.device_id for d in devs if d.kind == "gas"
                   and (v.fresh(d.device_id, "lel_pct") or 0.0) >= param(rule, "gas_lel")]
            hot = [d.device_id for d in devs if d.kind == "power"
                   and (v.fresh(d.device_id, "temp_c") or -99.0) >= param(rule, "temp_c")]
            if gas and hot:
                yield Hit(b, max(v.readings[g]["lel_pct"] for g in gas), {"gas": len(gas), "hot": len(hot)}, gas + hot)
