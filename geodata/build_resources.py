"""Generate the bundled SAMPLE resources layer (geodata/data/resources.geojson) from the other sample layers.

    python -m geodata.build_resources

A step of its own, with its own seed, that reads the bundled layers and writes only resources.geojson
(the other layers and the device registry stay byte for byte as they are). Deterministic. Laid out in
METRIC_CRS metres: a gas valve and a water valve on each compound's edge near where the road reaches
it (each closes that compound), hydrants along the roads every HYDRANT_STEP_M, a gas, a water and a
power repair team base in the street, one shelter per community (a primary school's playground, or
the square of its neighbourhood centre), AEDs at each community service centre and clinic.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.ops
from shapely.geometry import Point, mapping

from core.geojson_io import write_feature_collection
from geodata import BUNDLED_DIR, METRIC_CRS
from geodata.build_sample import META, PREFIX, free_point, phone
from geodata.resources import CATEGORIES

SEED = 20261203
HYDRANT_STEP_M = 120.0  # GB 50974-2014 §7.2.5: municipal hydrants at most 120 m apart
HYDRANT_KERB_M = 6.0  # beside the road's centre line
VALVE_INSET_M = 2.0  # just inside the compound's fence, at its gate
VALVE_SPREAD_M = 18.0  # gas and water valves either side of the gate
OUT_FILE = "resources.geojson"
TEAMS = (  # (serves, name, community it is based in)
    ("gas", "十堰燃气车城路抢修站", "gongyixincun"),
    ("water", "十堰供水张湾抢修队", "lanshanjun"),
    ("power", "张湾供电所车城路抢修班", "yanling"),
)


def _side(centre: Point, p: Point) -> str:
    """东/南/西/北 of p seen from the centre (which side of the compound a valve is on)."""
    ang = math.degrees(math.atan2(p.y - centre.y, p.x - centre.x))
    return "东" if -45 <= ang < 45 else "北" if 45 <= ang < 135 else "南" if -135 <= ang < -45 else "西"


def _along(ring: Any, s: float) -> Point:
    return ring.interpolate(s % ring.length)


def build(src: Path = BUNDLED_DIR) -> list[dict[str, Any]]:
    import geopandas as gpd

    rng = random.Random(SEED)
    read = {n: gpd.read_file(src / f"{n}.geojson", engine="pyogrio").to_crs(METRIC_CRS)
            for n in ("communities", "compounds", "units", "roads", "water")}  # fmt: skip
    back = pyproj.Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)
    comms = dict(zip(read["communities"]["community"], read["communities"].geometry, strict=True))
    compounds = read["compounds"].sort_values("compound_id")
    cp_union = shapely.union_all(np.asarray(compounds.geometry.values))
    water = shapely.union_all(np.asarray(read["water"].geometry.values))
    roads = read["roads"].sort_values("road_id")
    road_union = shapely.union_all(np.asarray(roads.geometry.values))
    feats: list[dict[str, Any]] = []

    def add(pt: Point, rid: str, category: str, name: str, community: str, **extra: Any) -> None:
        assert category in CATEGORIES and comms[community].contains(pt), (rid, community)
        lon, lat = back.transform(pt.x, pt.y)
        props = {"resource_id": rid, "category": category, "name": name, "community": community,
                 "closes": extra.pop("closes", None), "serves": extra.pop("serves", None), **extra}
        feats.append({"type": "Feature", "properties": props,
                      "geometry": mapping(Point(round(lon, 7), round(lat, 7)))})

    for cid, cname, comm, poly in zip(compounds["compound_id"], compounds["name"], compounds["community"],
                                      compounds.geometry, strict=True):  # fmt: skip
        ring = poly.buffer(-VALVE_INSET_M).exterior
        gate = ring.project(shapely.ops.nearest_points(ring, road_union)[0])  # where the road reaches it
        centre = poly.centroid
        gv, wv = _along(ring, gate - VALVE_SPREAD_M), _along(ring, gate + VALVE_SPREAD_M)
        add(gv, f"GV-{cid}", "gas_valve", f"{cname} {_side(centre, gv)}侧阀门", comm, closes=cid)
        add(wv, f"WV-{cid}", "water_valve", f"{cname} {_side(centre, wv)}侧进水阀门", comm, closes=cid)

    counts: dict[str, int] = {}
    for rname, line in zip(roads["name"], roads.geometry, strict=True):
        lines = list(getattr(line, "geoms", [line]))
        for part in lines:
            for d in np.arange(HYDRANT_STEP_M / 2, part.length, HYDRANT_STEP_M):
                a, b = part.interpolate(max(d - 1, 0)), part.interpolate(min(d + 1, part.length))
                dx, dy = b.x - a.x, b.y - a.y
                norm = math.hypot(dx, dy) or 1.0
                c = part.interpolate(d)
                pt = Point(c.x - dy / norm * HYDRANT_KERB_M, c.y + dx / norm * HYDRANT_KERB_M)  # left kerb
                comm = next((k for k, g in comms.items() if g.buffer(-1).contains(pt)), None)
                if comm is None or pt.distance(cp_union) < 3 or pt.distance(water) < 3:
                    continue
                counts[comm] = counts.get(comm, 0) + 1
                add(pt, f"H-{PREFIX[comm]}-{counts[comm]:02d}", "hydrant", f"{rname} {counts[comm]}号消火栓", comm)

    mains = shapely.union_all([g for n, g in zip(roads["name"], roads.geometry, strict=True)
                               if n in ("车城路", "公园路")])  # fmt: skip
    avoid = shapely.union_all([cp_union, water, shapely.union_all(np.asarray(read["units"].geometry.values))])
    for serves, tname, comm in TEAMS:
        pt = free_point(rng, comms[comm].buffer(-15), avoid.buffer(12), near=mains)
        add(pt, f"T-{serves.upper()}", "team", tname, comm, serves=serves, phone=phone(rng), contact="24小时值班")

    units = read["units"].sort_values("unit_id")
    for comm in sorted(comms):
        mine = units[units["community"] == comm]
        school = mine[(mine["category"] == "学校") & mine["name"].str.contains("小学")]
        if len(school):
            host, suffix, cap = school.iloc[0], "操场应急避难场所", 1500
        else:
            host, suffix, cap = mine[mine["category"] == "邻里中心"].iloc[0], "广场应急避难场所", 800
        add(host.geometry, f"SH-{PREFIX[comm]}", "shelter", f"{host['name']}{suffix}", comm,
            phone=host["phone"], capacity=cap)
        for n, (_, u) in enumerate(mine[mine["category"].isin(("机关", "医疗"))].iterrows(), start=1):
            pt = Point(u.geometry.x + 3, u.geometry.y)  # beside the door, not under the unit's own dot
            add(pt, f"AED-{PREFIX[comm]}-{n:02d}", "aed", f"{u['name']} AED", comm, phone=u["phone"])
    return feats


def write(feats: list[dict[str, Any]], out_dir: Path = BUNDLED_DIR) -> Path:
    path = out_dir / OUT_FILE
    meta = {**META, "generator": "geodata/build_resources.py", "seed": SEED}
    write_feature_collection(path, feats, name="resources", metadata=meta)
    return path


def main() -> int:
    feats = build()
    path = write(feats)
    print(f"wrote {len(feats)} sample resources to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
