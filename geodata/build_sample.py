"""Generate the bundled SAMPLE layers and registry in geodata/data/ (synthetic, not surveyed).

    python -m geodata.build_sample

Deterministic: a fixed seed and fixed layouts, so re-running reproduces the committed files byte for
byte. Geometry is laid out in local metres around (110.790 E, 32.650 N) and converted to lon/lat with
an equirectangular approximation (exact enough at 2 km; affine, so containment is preserved).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box, mapping
from shapely.geometry.polygon import orient

from core.contract import COMMUNITIES
from core.geojson_io import write_feature_collection
from core.registry import REGISTRY_FILE_NAME
from geodata import BUNDLED_DIR, LAYER_NAMES

SEED = 20261125
LON0, LAT0 = 110.790, 32.650
KX = 111_320.0 * math.cos(math.radians(LAT0))  # metres per degree of longitude here
KY = 110_940.0  # metres per degree of latitude here
META = {
    "sample": True,
    "synthetic": True,
    "generator": "geodata/build_sample.py",
    "seed": SEED,
    "note": "示例数据 SAMPLE DATA: synthetic layout of 车城路街道, not surveyed; replace via geodata import",
}

# Shared boundary polylines (metres). 车城路 runs along EW, 公园路 along NS; C is where they meet.
C = (30.0, -20.0)
EW = [(-850.0, 15.0), (-400.0, 5.0), C, (420.0, -10.0), (850.0, -25.0)]
NS = [(-5.0, 1000.0), (20.0, 500.0), C, (-15.0, -500.0), (10.0, -1000.0)]
RINGS: dict[str, list[tuple[float, float]]] = {
    "yanling": [EW[0], EW[1], C, NS[1], NS[0], (-430, 985), (-850, 1000), (-870, 500)],
    "gongyixincun": [C, EW[3], EW[4], (870, 480), (850, 1000), (420, 1010), NS[0], NS[1]],
    "lanshanjun": [EW[0], (-860, -520), (-850, -1000), (-420, -990), NS[4], NS[3], C, EW[1]],
    "yanhu": [C, NS[3], NS[4], (430, -1015), (850, -1000), (865, -510), EW[4], EW[3]],
}
PREFIX = {"yanling": "YL", "gongyixincun": "GY", "lanshanjun": "LSJ", "yanhu": "YH"}
SHORT = {"yanling": "岩岭", "gongyixincun": "工艺新村", "lanshanjun": "蓝山郡", "yanhu": "艳湖"}
COMPOUND_NAMES = {
    "yanling": ["半山尚小区", "岩岭小区", "岩岭花园", "东鑫大厦小区", "翠岭苑",
                "半山华庭", "岭秀家园", "松涛苑", "岩岭新居", "枫林小区"],
    "gongyixincun": ["工艺新村小区", "工艺新村二区", "车城花园", "锦绣苑", "和谐家园",
                     "阳光小区", "康居小区", "汽配新村", "桃园小区", "百合苑"],
    "lanshanjun": ["蓝山郡小区", "蓝山郡二期", "山水华府", "绿城花园", "金色家园",
                   "蓝山名苑", "丽景苑", "紫荆花园", "御景湾", "香榭小区"],
    "yanhu": ["艳湖小区", "艳湖花园", "湖景苑", "湖畔人家", "滨湖新村",
              "碧水苑", "荷塘小区", "清风苑", "湖光山色", "悦湖居"],
}  # fmt: skip
OLD_STYLE = ("新村", "桃园", "岩岭小区", "艳湖小区")  # 1980s-90s walk-ups: 6-7 floors
UNIT_SPECS = [  # (name suffix or full name, category, inside a compound?)
    ("{s}社区党群服务中心", "机关", False),
    ("{s}社区卫生服务站", "医疗", True),
    ("{s}邻里中心", "邻里中心", False),
    ("{s}老年幸福食堂", "老年幸福食堂", True),
]
SCHOOLS = {"yanling": "车城路小学", "gongyixincun": "工艺新村幼儿园", "lanshanjun": "蓝山郡幼儿园",
           "yanhu": "艳湖小学"}  # fmt: skip
ENTERPRISES = {
    "yanling": ["十堰岩岭汽车零部件有限公司", "东鑫物业服务有限公司"],
    "gongyixincun": ["车城工艺美术有限公司", "十堰工艺新村汽配城"],
    "lanshanjun": ["蓝山物业服务有限公司", "十堰蓝山电子科技有限公司"],
    "yanhu": ["十堰湖畔科技有限公司", "艳湖商务酒店"],
}
SHOP_KINDS = [("餐饮", "三合汤馆"), ("超市", "生活超市"), ("药店", "大药房"), ("便利店", "便利店"),
              ("五金", "五金店"), ("理发", "美发店"), ("餐饮", "热干面馆"), ("水果", "水果店"),
              ("餐饮", "农家土菜馆"), ("维修", "家电维修部")]  # fmt: skip
SHOP_PREFIX = ["惠民", "老王", "车城", "好邻居", "湖畔", "百姓",
               "益丰", "鑫源", "福满", "家乐", "顺心", "万家"]  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵周吴徐孙胡朱高林何郭马罗"


def to_lonlat(geom: shapely.Geometry) -> shapely.Geometry:
    """Local metres -> lon/lat, rounded to 1e-7 degree (~1 cm) so output is stable."""

    def conv(xy: np.ndarray) -> np.ndarray:
        return np.round(np.column_stack([LON0 + xy[:, 0] / KX, LAT0 + xy[:, 1] / KY]), 7)

    return shapely.transform(geom, conv)


def feature(geom: shapely.Geometry, props: dict[str, Any]) -> dict[str, Any]:
    g = to_lonlat(geom)
    if isinstance(g, Polygon):
        g = orient(g, sign=1.0)  # RFC 7946: exterior rings counter-clockwise
    return {"type": "Feature", "properties": props, "geometry": mapping(g)}


def phone(rng: random.Random) -> str:
    return f"0719-8{rng.randrange(100000, 999999)}"  # Shiyan area code; fictitious numbers


def contact(rng: random.Random, title: str) -> str:
    return rng.choice(SURNAMES) + title


def cut_corner(rect: Polygon, rng: random.Random) -> Polygon:
    """Trim one corner so compounds are not all plain rectangles (stays inside the rectangle)."""
    x0, y0, x1, y1 = rect.bounds
    fx, fy = (x1 - x0) * rng.uniform(0.2, 0.35), (y1 - y0) * rng.uniform(0.2, 0.35)
    corner = rng.randrange(4)
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    cx, cy = pts[corner]
    sx, sy = (1 if cx == x0 else -1), (1 if cy == y0 else -1)
    a, b = (cx + sx * fx, cy), (cx, cy + sy * fy)
    repl = [b, a] if corner in (0, 2) else [a, b]  # keep the ring's walking order
    return Polygon(pts[:corner] + repl + pts[corner + 1 :])


def community_grid(poly: Polygon) -> tuple[list[Polygon], list[float], list[float]]:
    """3 x 4 cells over the community's inner area (45 m clear of its boundary roads)."""
    inner = poly.buffer(-45)
    x0, y0, x1, y1 = inner.bounds
    xs = list(np.linspace(x0, x1, 4))
    ys = list(np.linspace(y0, y1, 5))
    cells = [box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(4) for i in range(3)]
    return cells, xs, ys


def build_compound(cell: Polygon, inner: Polygon, rng: random.Random) -> Polygon:
    x0, y0, x1, y1 = cell.buffer(-12).bounds
    for shrink in (1.0, 0.85, 0.7, 0.55, 0.4):
        w = (x1 - x0) * rng.uniform(0.75, 0.95) * shrink
        h = (y1 - y0) * rng.uniform(0.75, 0.95) * shrink
        ox, oy = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
        rect = box(ox, oy, ox + w, oy + h)
        if rect.within(inner):
            return cut_corner(rect, rng) if rng.random() < 0.35 else rect
    raise RuntimeError("no room for a compound in cell")


def build_buildings(cid: str, name: str, poly: Polygon, rng: random.Random) -> list[dict[str, Any]]:
    inner = poly.buffer(-10)
    x0, y0, x1, y1 = inner.bounds
    out: list[tuple[Polygon, int]] = []
    if "大厦" in name or "华府" in name:  # towers
        cx, cy = poly.centroid.x, poly.centroid.y
        for dx in (-35, 35):
            fp = box(cx + dx - 16, cy - 16, cx + dx + 16, cy + 16)
            if fp.within(inner):
                out.append((fp, rng.choice((28, 30, 32))))
    else:
        floors = 7 if any(k in name for k in OLD_STYLE) else rng.choice((11, 18, 26, 33))
        depth, gap = 13.0, (22.0 if floors <= 7 else 32.0)
        length = rng.uniform(40, 60)
        y = y0 + 4
        while y + depth <= y1:
            x = x0 + rng.uniform(2, 10)
            while x + length <= x1:
                fp = box(x, y, x + length, y + depth)
                if fp.within(inner):
                    out.append((fp, floors))
                x += length + rng.uniform(12, 18)
            y += depth + gap
    if not out:  # always at least one building
        c = inner.representative_point()
        out.append((box(c.x - 10, c.y - 6, c.x + 10, c.y + 6), 6))
    feats = []
    for n, (fp, floors) in enumerate(out, start=1):
        w = fp.bounds[2] - fp.bounds[0]
        units_per_floor = 8 if floors >= 28 and w < 40 else 2 * max(1, round(w / 20))
        feats.append({
            "geom": fp,
            "props": {"building_id": f"{cid}-B{n:02d}", "compound_id": cid, "name": f"{n}栋",
                      "floors": floors, "households": floors * units_per_floor},
        })  # fmt: skip
    return feats


def free_point(
    rng: random.Random, area: shapely.Geometry, avoid: shapely.Geometry, near: shapely.Geometry | None = None
) -> Point:
    """A random point in `area`, 8 m clear of `avoid`, optionally within 60 m of `near`."""
    x0, y0, x1, y1 = area.bounds
    for _ in range(20000):
        p = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if area.contains(p) and p.distance(avoid) > 8 and (near is None or p.distance(near) < 60):
            return p
    raise RuntimeError("no free point")


def build() -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(SEED)
    # resources: a step of its own over these layers (geodata.build_resources), run by main().
    layers: dict[str, list[dict[str, Any]]] = {k: [] for k in LAYER_NAMES if k != "resources"}
    # Water: 百二河 along the south, and the 艳湖 pond inside the yanhu community.
    xs = np.linspace(-1600, 1600, 33)
    north = [(x, -1070 + 12 * math.sin(x / 300)) for x in xs]
    south = [(x, -1110 + 12 * math.sin(x / 300) + 6 * math.sin(x / 170)) for x in xs[::-1]]
    river = Polygon(north + south)
    communities = {slug: Polygon(ring) for slug, ring in RINGS.items()}
    _cells, pxs, pys = community_grid(communities["yanhu"])
    pond_centre = Point((pxs[1] + pxs[2]) / 2, (pys[2] + pys[3]) / 2)
    pond = shapely.affinity.scale(pond_centre.buffer(100, 24), 1.0, 0.8)
    layers["water"] += [
        feature(river, {"water_id": "W-BEH", "name": "百二河", "kind": "river"}),
        feature(pond, {"water_id": "W-YH", "name": "艳湖", "kind": "lake"}),
    ]
    road_lines = {
        "R-CCL": ("车城路", "主干路", LineString([(-1400, 30), *EW, (1400, -40)])),
        "R-GYL": ("公园路", "主干路", LineString([(-20, 1400), *NS, (25, -1040)])),
        "R-BHL": ("滨河路", "次干路", LineString([(x, -1040 + 5 * math.sin(x / 400)) for x in xs])),
    }
    all_compounds: list[Polygon] = []
    for slug, poly in communities.items():
        assert poly.is_valid, slug
        layers["communities"].append(feature(poly, {"community": slug, "name": COMMUNITIES[slug],
                                                    "area_km2": round(poly.area / 1e6, 3)}))  # fmt: skip
        cells, gxs, gys = community_grid(poly)
        inner = poly.buffer(-45)
        # A local road along the gap between grid columns 1 and 2 (it touches no compound).
        local = LineString([(gxs[1], gys[0]), (gxs[1], gys[-1])]).intersection(poly)
        road_lines[f"R-{PREFIX[slug]}"] = (f"{SHORT[slug]}路", "支路", local)
        usable = [c for c in cells if not c.intersects(pond.buffer(15))]
        chosen = sorted(rng.sample(range(len(usable)), 10))
        comp_polys: list[tuple[str, Polygon]] = []
        for n, idx in enumerate(chosen, start=1):
            cid, name = f"{PREFIX[slug]}-{n:02d}", COMPOUND_NAMES[slug][n - 1]
            cpoly = build_compound(usable[idx], inner, rng)
            blds = build_buildings(cid, name, cpoly, rng)
            layers["buildings"] += [feature(b["geom"], b["props"]) for b in blds]
            layers["compounds"].append(feature(cpoly, {
                "compound_id": cid, "name": name, "community": slug,
                "households": sum(b["props"]["households"] for b in blds),
                "buildings": len(blds), "kind": "compound"}))  # fmt: skip
            comp_polys.append((cid, cpoly))
            all_compounds.append(cpoly)
        avoid = shapely.union_all([p for _, p in comp_polys] + [pond, river])
        unit_area = poly.buffer(-15)
        units = [(t.format(s=SHORT[slug]), cat, inside) for t, cat, inside in UNIT_SPECS]
        units += [(SCHOOLS[slug], "学校", False)] + [(e, "企业", False) for e in ENTERPRISES[slug]]
        for n, (uname, cat, inside) in enumerate(units, start=1):
            if inside:  # clinic / canteen on the ground floor of a compound
                cid, cpoly = comp_polys[rng.randrange(len(comp_polys))]
                pt = free_point(rng, cpoly.buffer(-6), Point(1e9, 1e9))
            else:
                cid, pt = None, free_point(rng, unit_area, avoid)
            layers["units"].append(feature(pt, {
                "unit_id": f"U-{PREFIX[slug]}-{n:02d}", "name": uname, "category": cat, "community": slug,
                "compound_id": cid, "contact": contact(rng, "主任" if cat in ("机关", "医疗") else "经理"),
                "phone": phone(rng)}))  # fmt: skip
        main_roads = shapely.union_all([road_lines["R-CCL"][2], road_lines["R-GYL"][2]])
        for n in range(1, 11):
            cat, noun = SHOP_KINDS[n - 1]
            pt = free_point(rng, unit_area, avoid, near=main_roads)
            layers["shops"].append(feature(pt, {
                "shop_id": f"S-{PREFIX[slug]}-{n:02d}", "name": f"{rng.choice(SHOP_PREFIX)}{noun}",
                "category": cat, "community": slug, "contact": contact(rng, rng.choice(("先生", "女士"))),
                "phone": phone(rng)}))  # fmt: skip
    for rid, (name, cls, line) in road_lines.items():
        layers["roads"].append(feature(line, {"road_id": rid, "name": name, "class": cls}))
    return layers


def write(out_dir: Path, layers: dict[str, list[dict[str, Any]]]) -> None:
    for name, feats in layers.items():
        write_feature_collection(out_dir / f"{name}.geojson", feats, name=name, metadata=META)


def write_devices(out_dir: Path, features: Iterable[dict[str, Any]]) -> None:
    write_feature_collection(out_dir / REGISTRY_FILE_NAME, features, name="devices", metadata=META)


def main() -> int:
    from geodata.devplan import plan_features
    from geodata.layers import load_layers

    write(BUNDLED_DIR, build())
    layers = load_layers(BUNDLED_DIR)
    feats = plan_features(layers, seed=SEED)
    write_devices(BUNDLED_DIR, feats)
    from geodata import build_resources

    build_resources.write(build_resources.build())
    print(f"wrote sample layers and {len(feats)} devices to {BUNDLED_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
