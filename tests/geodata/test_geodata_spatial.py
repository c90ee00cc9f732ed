"""Spatial queries on a tiny hand-made layer set whose answers are worked out by hand."""

from __future__ import annotations

import math

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, box

from core.severity import RISK_STYLES, rollup, worst
from geodata.layers import Layers, load_bundled_layers
from geodata.spatial import SpatialIndex, compound_risk, spatial_index

LON0, LAT0 = 110.79, 32.65
# Metres per degree at 32.65 N on the ellipsoid (the metric CRS agrees to ~1e-5 over 1 km).
KX, KY = 93_820.0, 110_898.0


def ll(x: float, y: float) -> tuple[float, float]:
    return LON0 + x / KX, LAT0 + y / KY


def rect(x0: float, y0: float, x1: float, y1: float):  # type: ignore[no-untyped-def]
    (a, b), (c, d) = ll(x0, y0), ll(x1, y1)
    return box(a, b, c, d)


def frame(rows: list[dict], geoms: list) -> gpd.GeoDataFrame:  # type: ignore[type-arg]
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")


@pytest.fixture(scope="module")
def tiny() -> SpatialIndex:
    comms = frame([{"community": "yanling", "name": "岩岭社区"}, {"community": "yanhu", "name": "艳湖社区"}],
                  [rect(0, 0, 400, 400), rect(400, 0, 800, 400)])  # fmt: skip
    cps = frame(
        [
            {"compound_id": "T-A", "name": "甲小区", "community": "yanling", "households": 100, "buildings": 1},
            {"compound_id": "T-B", "name": "乙小区", "community": "yanling", "households": 200, "buildings": 0},
            {"compound_id": "T-C", "name": "丙小区", "community": "yanhu", "households": 300, "buildings": 0},
        ],
        [rect(50, 50, 150, 150), rect(250, 50, 350, 150), rect(450, 50, 550, 150)],
    )
    blds = frame([{"building_id": "T-A-B1", "compound_id": "T-A", "name": "1栋", "floors": 6}], [rect(60, 60, 80, 80)])
    units = frame(
        [{"unit_id": "U-1", "name": "小学", "category": "学校", "community": "yanling", "compound_id": None,
          "contact": "", "phone": ""}],
        [Point(ll(100, 300))],
    )  # fmt: skip
    shops = frame([{"shop_id": "S-1", "name": "超市", "category": "超市", "community": "yanling", "contact": "",
                    "phone": ""}], [Point(ll(200, 100))])  # fmt: skip
    roads = frame([{"road_id": "R-1", "name": "车城路"}], [LineString([ll(0, 200), ll(800, 200)])])
    water = frame([{"water_id": "W-1", "name": "百二河"}], [rect(0, -100, 800, -50)])
    return SpatialIndex(Layers(comms, cps, blds, units, shops, roads, water))


def test_locate(tiny: SpatialIndex) -> None:
    assert tuple(vars_of(tiny.locate(*ll(70, 70)))) == ("yanling", "T-A", "T-A-B1")
    assert tuple(vars_of(tiny.locate(*ll(100, 100)))) == ("yanling", "T-A", None)
    assert tuple(vars_of(tiny.locate(*ll(200, 300)))) == ("yanling", None, None)
    assert tuple(vars_of(tiny.locate(*ll(500, 100)))) == ("yanhu", "T-C", None)
    assert tuple(vars_of(tiny.locate(*ll(900, 900)))) == (None, None, None)


def vars_of(loc):  # type: ignore[no-untyped-def]
    return (loc.community, loc.compound_id, loc.building_id)


def test_assign_vectorised(tiny: SpatialIndex) -> None:
    pts = [ll(70, 70), ll(300, 100), ll(200, 100), ll(500, 60), ll(-5, -5)]
    lons, lats = zip(*pts, strict=True)
    assert list(tiny.assign(lons, lats)) == ["T-A", "T-B", None, "T-C", None]
    assert list(tiny.assign(lons, lats, "communities")) == ["yanling", "yanling", "yanling", "yanhu", None]
    # On the shared edge x = 400 the first-listed community wins, deterministically.
    edge_lon, edge_lat = ll(400, 200)
    assert list(tiny.assign([edge_lon], [edge_lat], "communities")) == ["yanling"]


def test_nearby(tiny: SpatialIndex) -> None:
    n = tiny.nearby(*ll(200, 100), radius_m=60)
    assert [h.id for h in n.shops] == ["S-1"] and n.shops[0].distance_m == pytest.approx(0, abs=0.01)
    assert n.units == []
    assert [h.id for h in n.compounds] in (["T-A", "T-B"], ["T-B", "T-A"])
    assert all(h.distance_m == pytest.approx(50, rel=0.01) for h in n.compounds)
    assert n.households == 300
    # Circle r=60 cut by a line 50 m from the centre: segment = r² acos(d/r) - d sqrt(r² - d²) ≈ 450 m²,
    # i.e. 4.5 % of each 100 m x 100 m compound -> 0.045 x (100 + 200) households.
    seg = 60**2 * math.acos(50 / 60) - 50 * math.sqrt(60**2 - 50**2)
    assert n.households_in_radius == pytest.approx(seg / 10_000 * 300, rel=0.05)
    far = tiny.nearby(*ll(200, 100), radius_m=260)  # T-C's west edge is 250 m away
    assert [h.id for h in far.units] == ["U-1"]
    assert far.units[0].distance_m == pytest.approx(math.hypot(100, 200), rel=0.01)
    assert [h.id for h in far.compounds][2:] == ["T-C"] and far.households == 600
    assert far.compounds[2].distance_m == pytest.approx(250, rel=0.01)


def test_compounds_crossed(tiny: SpatialIndex) -> None:
    assert tiny.compounds_crossed([ll(0, 100), ll(800, 100)]) == ["T-A", "T-B", "T-C"]
    assert tiny.compounds_crossed([ll(800, 100), ll(0, 100)]) == ["T-C", "T-B", "T-A"]
    assert tiny.compounds_crossed(LineString([ll(0, 300), ll(800, 300)])) == []


def test_sample_layers_locate_known_device() -> None:
    idx = spatial_index(load_bundled_layers())
    assert idx is spatial_index(load_bundled_layers())  # built once per layer set
    loc = idx.locate(110.7819513, 32.6511363)  # G-000001 of the sample registry
    assert (loc.community, loc.compound_id, loc.building_id) == ("yanling", "YL-01", "YL-01-B01")


def test_worst_and_rollup() -> None:
    assert worst([]) == "normal"
    assert worst(["blue", None, "yellow"]) == "yellow"
    assert worst(["blue", "red", "orange"]) == "red"
    with pytest.raises(ValueError, match="unknown severity"):
        worst(["purple"])
    got = rollup([("A", "blue"), ("A", "orange"), ("B", "yellow"), ("A", "yellow")], keys=["A", "B", "C"])
    assert got == {"A": "orange", "B": "yellow", "C": "normal"}
    assert [RISK_STYLES[k].label for k in ("red", "orange", "yellow", "blue", "normal")] == [
        "红", "橙", "黄", "蓝", "正常"]  # fmt: skip


def test_compound_risk_covers_every_compound() -> None:
    layers = load_bundled_layers()
    risk = compound_risk([{"compound_id": "LSJ-03", "severity": "red"}, {"compound_id": "YL-01", "severity": "blue"}],
                         layers)  # fmt: skip
    assert len(risk) == len(layers.compounds)
    assert risk["LSJ-03"] == "red" and risk["YL-01"] == "blue" and risk["YH-01"] == "normal"
