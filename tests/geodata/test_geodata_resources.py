"""The resources layer: the bundled sample is complete and reproducible, nearest-resource distances
agree with a hand computation, and a bad resources file is refused with a clear reason."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import orjson
import pytest
from shapely.geometry import LineString, Point

from core.contract import COMMUNITIES
from geodata import BUNDLED_DIR
from geodata.build_resources import HYDRANT_STEP_M, build, write
from geodata.layers import Layers, load_bundled_layers, load_layers
from geodata.resources import CATEGORIES, NEEDS, needs_for, row_problems
from geodata.spatial import SpatialIndex, spatial_index
from tests.geodata.test_geodata_spatial import frame, ll, rect

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def layers() -> Layers:
    return load_bundled_layers()


def test_bundled_resources_load_and_cover_every_community(layers: Layers) -> None:
    res = layers.resources
    assert layers.sources["resources"] == BUNDLED_DIR / "resources.geojson"
    assert set(res["category"]) == set(CATEGORIES)
    per = res.groupby(["community", "category"]).size()
    for comm in COMMUNITIES:
        for cat in CATEGORIES:
            if cat != "team":  # teams are the street's, based in some community each
                assert per.get((comm, cat), 0) >= 1, (comm, cat)
        assert per[(comm, "shelter")] == 1
    # Every compound has a gas valve and a water valve that close it.
    for cat in ("gas_valve", "water_valve"):
        closes = set(res.loc[res["category"] == cat, "closes"])
        assert closes == set(layers.compounds["compound_id"]), cat
    teams = res[res["category"] == "team"]
    assert {"gas", "water"} <= set(teams["serves"])
    assert teams["phone"].str.startswith("0719-").all()
    # Hydrants about every 120 m: none closer to another than half a step along the same road.
    hyd = res[res["category"] == "hydrant"].to_crs("EPSG:4546")
    assert len(hyd) >= 40
    for i, p in enumerate(hyd.geometry):
        others = hyd.geometry.drop(hyd.index[i])
        assert others.distance(p).min() > 20


def test_regenerating_reproduces_the_bundled_file_and_touches_nothing_else(tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in BUNDLED_DIR.glob("*.geojson")}
    path = write(build(), tmp_path)
    assert path.read_bytes() == before["resources.geojson"]
    assert {p.name: p.read_bytes() for p in BUNDLED_DIR.glob("*.geojson")} == before
    doc = orjson.loads(path.read_bytes())
    assert doc["metadata"]["sample"] is True and doc["metadata"]["generator"] == "geodata/build_resources.py"


def test_needs_are_one_home() -> None:
    assert [n.key for n in needs_for("gas")][:2] == ["gas_valve", "gas_team"]
    assert [n.key for n in needs_for("water")][:2] == ["water_valve", "water_team"]
    assert needs_for("camera") == ()
    assert all(n.category in CATEGORIES for n in NEEDS)
    assert row_problems("gas_valve", "YL-01", None, {"YL-01"}) == []
    assert row_problems("team", None, "gas,water") == []


# --- nearest, against a hand computation on a tiny layer set (metres east/north of ll(0, 0)) ---------------

@pytest.fixture(scope="module")
def tiny() -> SpatialIndex:
    comms = frame([{"community": "yanling", "name": "岩岭社区"}], [rect(0, 0, 1000, 1000)])
    cps = frame([{"compound_id": "T-A", "name": "甲小区", "community": "yanling", "households": 100, "buildings": 1},
                 {"compound_id": "T-B", "name": "乙小区", "community": "yanling", "households": 100, "buildings": 0}],
                [rect(100, 100, 200, 200), rect(210, 100, 300, 200)])  # fmt: skip
    blds = frame([{"building_id": "T-A-B1", "compound_id": "T-A", "name": "1栋", "floors": 6}],
                 [rect(120, 120, 140, 140)])
    empty = frame([], [])
    units = frame([{"unit_id": "U-1", "name": "x", "category": "学校", "community": "yanling", "compound_id": None,
                    "contact": "", "phone": ""}], [Point(ll(900, 900))])  # fmt: skip
    shops = frame([{"shop_id": "S-1", "name": "y", "category": "超市", "community": "yanling", "contact": "",
                    "phone": ""}], [Point(ll(900, 800))])  # fmt: skip
    roads = frame([{"road_id": "R-1", "name": "路"}], [LineString([ll(0, 50), ll(1000, 50)])])
    rows = [  # (id, category, x, y, closes, serves)
        ("GV-A", "gas_valve", 100, 150, "T-A", None),   # on T-A's west edge
        ("GV-B", "gas_valve", 205, 150, "T-B", None),   # between the two, nearer the test point
        ("GV-B1", "gas_valve", 130, 141, "T-A-B1", None),  # the building's own riser valve
        ("T-G", "team", 700, 400, None, "gas"),
        ("T-W", "team", 400, 100, None, "water"),       # nearer, but serves water only
        ("H-1", "hydrant", 0, 50, None, None),
        ("H-2", "hydrant", 150, 50, None, None),
    ]
    res = frame([{"resource_id": r[0], "category": r[1], "name": r[0], "community": "yanling", "closes": r[4],
                  "serves": r[5], "phone": "0719-8000000" if r[1] == "team" else None} for r in rows],
                [Point(ll(r[2], r[3])) for r in rows])
    return SpatialIndex(Layers(comms, cps, blds, units, shops, roads, empty, resources=res))


def test_nearest_resources_against_hand_distances(tiny: SpatialIndex) -> None:
    # A point in T-A's east part, outside its building: (190, 150).
    got = tiny.nearest_resources(*ll(190, 150))
    assert got["gas_valve"].id == "GV-B" and got["gas_valve"].distance_m == pytest.approx(15, abs=0.2)
    assert not got["gas_valve"].closes_here
    assert got["gas_team"].id == "T-G"
    assert got["gas_team"].distance_m == pytest.approx(math.hypot(510, 250), abs=0.5)  # 568.0 m
    assert got["water_team"].id == "T-W"
    assert got["hydrant"].id == "H-2" and got["hydrant"].distance_m == pytest.approx(math.hypot(40, 100), abs=0.2)
    assert "shelter" not in got and "water_valve" not in got  # the layer has none: no answer, no error
    # Told the point is in T-A, the valve that closes T-A wins over the nearer one of T-B.
    mine = tiny.nearest_resources(*ll(190, 150), within=(None, "T-A"))
    assert mine["gas_valve"].id == "GV-A" and mine["gas_valve"].distance_m == pytest.approx(90, abs=0.2)
    assert mine["gas_valve"].closes_here and mine["gas_valve"].closes_names == ("甲小区",)
    # In the building: its own valve first, named with its compound.
    b = tiny.nearest_resources(*ll(125, 125), within=("T-A-B1", "T-A"))
    assert b["gas_valve"].id == "GV-B1" and b["gas_valve"].closes_names == ("甲小区 1栋",)
    assert b["gas_valve"].distance_m == pytest.approx(math.hypot(5, 16), abs=0.2)
    assert b["gas_team"].phone == "0719-8000000"


def test_nearest_on_the_bundled_layers_is_fast(layers: Layers) -> None:
    import time

    idx = spatial_index(layers)
    p = layers.buildings.geometry.iloc[0].representative_point()
    loc = idx.locate(p.x, p.y)
    t0 = time.perf_counter()
    for _ in range(50):
        got = idx.nearest_resources(p.x, p.y, (loc.building_id, loc.compound_id))
    per_call = (time.perf_counter() - t0) / 50
    assert {n.key for n in NEEDS} == set(got)
    assert got["gas_valve"].closes == (loc.compound_id,) and got["gas_valve"].closes_here
    assert got["hydrant"].distance_m < 3 * HYDRANT_STEP_M
    assert per_call < 0.05  # generous on a loaded machine; ~1 ms normally


# --- import ---------------------------------------------------------------------------------------

def _write(tmp_path: Path, rows: list[dict], pts: list[Point], name: str = "res.geojson") -> Path:  # type: ignore[type-arg]
    path = tmp_path / name
    gpd.GeoDataFrame(rows, geometry=pts, crs="EPSG:4326").to_file(path, driver="GeoJSON")
    return path


def test_import_a_resources_layer_overrides_the_bundled_one(cli: Cli, tmp_path: Path, data_dir: Path,
                                                            layers: Layers) -> None:
    cp = layers.compounds.iloc[0]
    inside = cp.geometry.representative_point()
    src = _write(tmp_path, [{"resource_id": "GV-NEW", "category": "gas_valve", "name": "新阀门",
                             "closes": cp["compound_id"]},
                            {"resource_id": "T-NEW", "category": "team", "name": "抢修队", "serves": "gas"}],
                 [inside, inside])
    rc, out, err = cli("geodata", "import", src, "--layer", "resources")
    assert rc == 0, err
    assert "imported 2 resources" in out
    got = load_layers(data_dir / "geodata")
    assert got.sources["resources"] == data_dir / "geodata" / "resources.geojson"
    assert list(got.resources["community"]) == [cp["community"]] * 2  # filled in by location
    assert got.sources["compounds"] == BUNDLED_DIR / "compounds.geojson"  # the other layers stay bundled
    hit = spatial_index(got).nearest_resources(inside.x, inside.y)
    assert hit["gas_valve"].id == "GV-NEW" and hit["gas_valve"].distance_m == pytest.approx(0, abs=0.01)


def test_a_bad_resources_file_is_refused_with_reasons(cli: Cli, tmp_path: Path, data_dir: Path,
                                                      layers: Layers) -> None:
    p = layers.compounds.geometry.iloc[0].representative_point()
    src = _write(tmp_path, [
        {"resource_id": "GV-1", "category": "gas_valve", "name": "阀", "closes": None},
        {"resource_id": "GV-2", "category": "gas_valve", "name": "阀", "closes": "NO-SUCH"},
        {"resource_id": "T-1", "category": "team", "name": "队", "serves": "gaz"},
        {"resource_id": "X-1", "category": "fire_truck", "name": "车"},
        {"resource_id": "GV-1", "category": "hydrant", "name": "栓"},
    ], [p] * 5)
    rc, _, err = cli("geodata", "import", src, "--layer", "resources")
    assert rc == 2
    assert "feature 0 (resource_id GV-1): 燃气阀门 (gas_valve) needs `closes`" in err
    assert "feature 1 (resource_id GV-2): closes 'NO-SUCH': no such compound or building" in err
    assert "feature 2 (resource_id T-1): serves 'gaz': not a device kind" in err
    assert "feature 3 (resource_id X-1): category 'fire_truck' is not one of gas_valve" in err
    assert "duplicate resource_id 'GV-1'" in err
    assert "layer resources not written" in err
    assert not (data_dir / "geodata" / "resources.geojson").exists()
    # Lines are not resources; a file without `category` names the field to map.
    line = tmp_path / "line.geojson"
    gpd.GeoDataFrame([{"resource_id": "H-1", "category": "hydrant", "name": "栓"}],
                     geometry=[LineString([(p.x, p.y), (p.x + 0.001, p.y)])], crs="EPSG:4326").to_file(line)
    rc, _, err = cli("geodata", "import", line, "--layer", "resources")
    assert rc == 2 and "LineString, layer resources needs Point" in err
    nocat = _write(tmp_path, [{"resource_id": "H-1", "name": "栓"}], [p], "nocat.geojson")
    rc, _, err = cli("geodata", "import", nocat, "--layer", "resources")
    assert rc == 2 and "layer resources lacks field(s) category" in err


def test_a_compound_import_warns_of_valves_left_closing_nothing(cli: Cli, tmp_path: Path, data_dir: Path,
                                                                 layers: Layers) -> None:
    cp = layers.compounds[layers.compounds["compound_id"] != "YL-01"]
    cp.to_file(tmp_path / "cp.geojson", driver="GeoJSON")
    rc, _, err = cli("geodata", "import", tmp_path / "cp.geojson", "--layer", "compounds")
    assert rc == 0, err
    assert "warning: valves close places no longer in the layers: GV-YL-01 (YL-01), WV-YL-01 (YL-01)" in err


def test_a_hand_edited_override_without_a_column_fails_loading_loudly(tmp_path: Path, layers: Layers) -> None:
    p = layers.compounds.geometry.iloc[0].representative_point()
    _write(tmp_path, [{"resource_id": "H-1", "name": "栓", "community": "yanling", "closes": None, "serves": None}],
           [p], "resources.geojson")
    with pytest.raises(ValueError, match=r"layer 'resources' lacks column.*category"):
        load_layers(tmp_path)
    gpd.GeoDataFrame([{"resource_id": "SH-1", "category": "shelter", "name": "广场", "community": "yanling",
                       "closes": None, "serves": None}],
                     geometry=[p.buffer(0.0001)], crs="EPSG:4326").to_file(tmp_path / "resources.geojson")
    with pytest.raises(ValueError, match=r"layer 'resources' needs Point geometry: SH-1 \(Polygon\)"):
        load_layers(tmp_path)
