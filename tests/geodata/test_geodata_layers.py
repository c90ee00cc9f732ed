"""The bundled sample layers and registry are consistent with each other and with the contract."""

from __future__ import annotations

import itertools

import orjson
import pytest

from core.contract import COMMUNITIES, DEVICE_ID_RE, KINDS
from core.registry import bundled_registry_path, load_registry
from geodata import BUNDLED_DIR, LAYER_NAMES
from geodata.checks import check_layers, check_registry
from geodata.layers import Layers, layer_sources, load_bundled_layers, load_layers, places_index


@pytest.fixture(scope="module")
def layers() -> Layers:
    return load_bundled_layers()


def test_layers_are_consistent(layers: Layers) -> None:
    # Non-overlap (communities, compounds), containment (compound/unit/shop in community,
    # building in compound), unique ids across compounds+units+shops, valid geometry.
    assert check_layers(layers) == []


def test_bundled_files_are_marked_sample_and_epsg4326(layers: Layers) -> None:
    for name in (*LAYER_NAMES, "devices"):
        doc = orjson.loads((BUNDLED_DIR / f"{name}.geojson").read_bytes())
        assert doc["metadata"]["sample"] is True
    for name in LAYER_NAMES:
        frame = layers.layer(name)
        assert frame.crs.to_epsg() == 4326
        minx, miny, maxx, maxy = frame.total_bounds
        assert 110.76 < minx < maxx < 110.82 and 32.62 < miny < maxy < 32.68, name


def test_communities_match_contract_and_scale(layers: Layers) -> None:
    got = dict(zip(layers.communities["community"], layers.communities["name"], strict=True))
    assert got == COMMUNITIES
    areas = layers.communities.to_crs("EPSG:4546").area / 1e6
    assert all(0.5 <= a <= 1.0 for a in areas), list(areas)
    # Neighbours share edges: every pair of adjacent quadrants touches along a line, not a point.
    g = dict(zip(layers.communities["community"], layers.communities.geometry, strict=True))
    assert g["yanling"].intersection(g["gongyixincun"]).length > 0
    assert g["yanling"].intersection(g["lanshanjun"]).length > 0


def test_required_names_and_compound_fields(layers: Layers) -> None:
    cp = layers.compounds
    assert 30 <= len(cp) <= 50
    names = dict(zip(cp["name"], cp["community"], strict=True))
    assert names["半山尚小区"] == "yanling"
    assert "东鑫大厦小区" in names
    assert set(cp["kind"]) == {"compound"}
    assert all(DEVICE_ID_RE.match(c) for c in cp["compound_id"])
    assert (cp["households"] > 0).all() and (cp["buildings"] > 0).all()
    counts = layers.buildings.groupby("compound_id").size()
    assert dict(counts) == dict(zip(cp["compound_id"], cp["buildings"], strict=True))
    assert "车城路" in set(layers.roads["name"])
    assert "百二河" in set(layers.water["name"])
    cats = set(layers.units["category"])
    assert {"学校", "医疗", "机关", "企业", "邻里中心", "老年幸福食堂"} <= cats
    assert {"餐饮", "超市", "药店"} <= set(layers.shops["category"])


def test_places_index_covers_three_layers(layers: Layers) -> None:
    places = places_index(layers)
    assert len(places) == len(layers.compounds) + len(layers.units) + len(layers.shops)
    assert places["LSJ-03"].layer == "compound" and places["LSJ-03"].community == "lanshanjun"
    assert places["U-YL-01"].layer == "unit" and places["S-YH-01"].layer == "shop"


def test_sample_registry_covers_every_community_and_kind(layers: Layers) -> None:
    reg = load_registry(bundled_registry_path())
    assert 2000 <= len(reg) <= 5000
    seen = {(d.community, d.kind) for d in reg.values()}
    assert seen == set(itertools.product(COMMUNITIES, KINDS))
    prefix = {"gas": "G-", "water": "W-", "power": "P-", "camera": "C-"}
    interval = {"gas": 10, "water": 30, "power": 15, "camera": 30}
    for d in reg.values():
        assert d.device_id.startswith(prefix[d.kind]) and len(d.device_id) == 8
        assert d.interval_s == interval[d.kind]
        assert d.extra["install"]


def test_every_sample_device_inside_its_place(layers: Layers) -> None:
    # The same checks as an import, including the 30 m location tolerance.
    assert check_registry(layers, bundled_registry_path()) == []
    # Stricter for the sample: compound devices strictly inside their compound polygon.
    reg = load_registry(bundled_registry_path())
    places = layers.places
    from shapely import contains_xy

    for d in reg.values():
        place = places[d.compound_id]
        if place.layer == "compound":
            assert contains_xy(place.geometry, d.lon, d.lat), d
        else:
            assert (d.lon, d.lat) == (place.geometry.x, place.geometry.y)


def test_override_dir_takes_precedence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "roads.geojson").write_bytes((BUNDLED_DIR / "roads.geojson").read_bytes())
    src = layer_sources(tmp_path)
    assert src["roads"] == tmp_path / "roads.geojson"
    assert src["compounds"] == BUNDLED_DIR / "compounds.geojson"
    assert load_layers(tmp_path).sources["roads"] == tmp_path / "roads.geojson"


def test_build_sample_is_deterministic() -> None:
    from geodata.build_sample import build, feature

    again = build()
    doc = orjson.loads((BUNDLED_DIR / "compounds.geojson").read_bytes())
    assert orjson.dumps(again["compounds"]) == orjson.dumps(doc["features"])
    assert feature  # the module's public helper stays importable
