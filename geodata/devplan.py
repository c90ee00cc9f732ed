"""Where devices go: the placement plan behind the sample registry and `geodata synth`.

Gas detectors in kitchens, pipe wells and one sewer manhole (窨井) per compound (10 s), water meters
at compound inlets and pump rooms (30 s), power monitors at each building's distribution boxes (15 s),
cameras at gates, corners and stairwell doors (30 s); units and shops get a few devices at their own
point.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import Point

from core.contract import KINDS, MANHOLE
from geodata.layers import Layers

INTERVAL_S: dict[str, int] = {"gas": 10, "water": 30, "power": 15, "camera": 30}
ID_PREFIX: dict[str, str] = {"gas": "G", "water": "W", "power": "P", "camera": "C"}
INSET_M = 3.0  # boundary devices (gates, inlets, corners) sit this far inside the compound

Sampler = Callable[[random.Random], tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Slot:
    """One device position: what it is, where it belongs, and how to draw a point for it."""

    kind: str
    community: str
    compound_id: str
    building_id: str | None
    install: str
    sample: Sampler


def _scale(lat: float) -> tuple[float, float]:
    """Metres per degree (lon, lat) near `lat`; plenty accurate for nudges of a few metres."""
    return 111_320.0 * math.cos(math.radians(lat)), 110_940.0


def _inside(poly: shapely.Geometry, avoid: shapely.Geometry | None = None) -> Sampler:
    x0, y0, x1, y1 = poly.bounds
    shapely.prepare(poly)

    def draw(rng: random.Random) -> tuple[float, float]:
        for _ in range(1000):
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            if shapely.contains_xy(poly, x, y) and (avoid is None or not shapely.contains_xy(avoid, x, y)):
                return round(x, 7), round(y, 7)
        p = poly.representative_point()
        return round(p.x, 7), round(p.y, 7)

    return draw


def _nudge_in(poly: shapely.Geometry, p: Point) -> tuple[float, float] | None:
    """Move boundary point p INSET_M metres towards the polygon's interior point; None if that fails."""
    c = poly.representative_point()
    kx, ky = _scale(p.y)
    dx, dy = (c.x - p.x) * kx, (c.y - p.y) * ky
    d = math.hypot(dx, dy)
    if d < INSET_M * 2:
        return None
    x, y = p.x + (c.x - p.x) * INSET_M / d, p.y + (c.y - p.y) * INSET_M / d
    return (round(x, 7), round(y, 7)) if shapely.contains_xy(poly, x, y) else None


def _on_edge(poly: shapely.Geometry) -> Sampler:
    ring = shapely.get_exterior_ring(shapely.get_geometry(poly, 0))

    def draw(rng: random.Random) -> tuple[float, float]:
        for _ in range(50):
            got = _nudge_in(poly, ring.interpolate(rng.random(), normalized=True))
            if got:
                return got
        return _inside(poly)(rng)

    return draw


def _at_corner(poly: shapely.Geometry) -> Sampler:
    coords = list(shapely.get_exterior_ring(shapely.get_geometry(poly, 0)).coords)[:-1]

    def draw(rng: random.Random) -> tuple[float, float]:
        for _ in range(20):
            got = _nudge_in(poly, Point(rng.choice(coords)))
            if got:
                return got
        return _on_edge(poly)(rng)

    return draw


def _at(p: Point) -> Sampler:
    return lambda _rng: (round(p.x, 7), round(p.y, 7))


def plan_slots(layers: Layers, rng: random.Random) -> list[Slot]:
    """All device positions for the layers, in a stable order (community, compound, building)."""
    slots: list[Slot] = []
    by_compound = {cid: grp for cid, grp in layers.buildings.groupby("compound_id", sort=False)}
    for row in layers.compounds.itertuples(index=False):
        cid, comm, poly = str(row.compound_id), str(row.community), row.geometry

        def add(kind: str, install: str, sample: Sampler, bid: str | None = None, c: str = comm, k: str = cid) -> None:
            slots.append(Slot(kind, c, k, bid, install, sample))

        blds = by_compound.get(cid)
        footprints = shapely.union_all(list(blds.geometry)) if blds is not None else None
        for b in blds.itertuples(index=False) if blds is not None else ():
            inside, bid = _inside(b.geometry), str(b.building_id)
            add("gas", "管井", inside, bid)
            for _ in range(rng.randint(3, 5)):
                add("gas", "厨房", inside, bid)
            for _ in range(2 if int(b.floors) >= 18 else 1):
                add("power", "配电箱", inside, bid)
            add("camera", "单元门", inside, bid)
        for _ in range(1 + int(int(row.households) > 600)):
            add("water", "小区进水口", _on_edge(poly))
        add("water", "泵房", _inside(poly, footprints))
        for _ in range(2):
            add("camera", "大门", _on_edge(poly))
            add("camera", "路口", _at_corner(poly))
    for u in layers.units.itertuples(index=False):
        uid, comm, at = str(u.unit_id), str(u.community), _at(u.geometry)
        slots.append(Slot("camera", comm, uid, None, "大门", at))
        slots.append(Slot("power", comm, uid, None, "配电箱", at))
        if u.category in ("老年幸福食堂", "学校", "邻里中心", "企业"):
            slots.append(Slot("gas", comm, uid, None, "厨房", at))
        if u.category in ("学校", "医疗", "企业"):
            slots.append(Slot("water", comm, uid, None, "进水口", at))
    for s in layers.shops.itertuples(index=False):
        sid, comm, at = str(s.shop_id), str(s.community), _at(s.geometry)
        slots.append(Slot("camera", comm, sid, None, "大门", at))
        if s.category == "餐饮":
            slots.append(Slot("gas", comm, sid, None, "厨房", at))
        if rng.random() < 0.5:
            slots.append(Slot("power", comm, sid, None, "配电箱", at))
    # Planned last, so every earlier device keeps its id and point: a methane detector under one
    # sewer manhole cover per compound, in the grounds (not under a building).
    for row in layers.compounds.itertuples(index=False):
        cid, blds = str(row.compound_id), by_compound.get(str(row.compound_id))
        footprints = shapely.union_all(list(blds.geometry)) if blds is not None else None
        slots.append(Slot("gas", str(row.community), cid, None, MANHOLE, _inside(row.geometry, footprints)))
    return slots


def _features(slots: list[Slot], rng: random.Random) -> list[dict[str, Any]]:
    counters = dict.fromkeys(KINDS, 0)
    width = max(6, len(str(len(slots))))
    out = []
    for s in slots:
        counters[s.kind] += 1
        lon, lat = s.sample(rng)
        props = {
            "device_id": f"{ID_PREFIX[s.kind]}-{counters[s.kind]:0{width}d}",
            "kind": s.kind,
            "community": s.community,
            "compound_id": s.compound_id,
            "interval_s": INTERVAL_S[s.kind],
            "building_id": s.building_id,
            "install": s.install,
        }
        out.append({"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    return out


def plan_features(layers: Layers, seed: int) -> list[dict[str, Any]]:
    """The realistic registry for the layers: one device per planned slot."""
    rng = random.Random(seed)
    return _features(plan_slots(layers, rng), rng)


def synth_features(layers: Layers, n: int, seed: int = 1) -> list[dict[str, Any]]:
    """Exactly n devices valid against the layers, covering every community x kind when n allows.

    Fewer than the plan: one slot per (community, kind) first, then a random subset. More: every slot,
    then repeats of random slots with freshly drawn points (same host, same rules).
    """
    rng = random.Random(seed)
    slots = plan_slots(layers, rng)
    if n <= len(slots):
        first: dict[tuple[str, str], int] = {}
        for i, s in enumerate(slots):
            first.setdefault((s.community, s.kind), i)
        keep = sorted(first.values())[:n]
        rest = sorted(set(range(len(slots))) - set(keep))
        keep = sorted(keep + rng.sample(rest, n - len(keep)))
        chosen = [slots[i] for i in keep]
    else:
        chosen = slots + rng.choices(slots, k=n - len(slots))
    return _features(chosen, rng)
