"""`geodata import` of the survey office's files: Shapefile / GeoPackage in CGCS2000 Gauss–Krüger, CAD drawings
(DXF), and the refusals of a file with no or a wrong coordinate system. Every file is built here from the bundled
sample layers, projected the way a survey office would deliver it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ezdxf
import numpy as np
import pyproj
import pytest
import shapely

from geodata import METRIC_CRS
from geodata.layers import load_bundled_layers, load_layers, to_metric
from geodata.survey import STREET_MARGIN_M

Cli = Callable[..., tuple[int, str, str]]


def max_shift_m(a: np.ndarray, b: np.ndarray) -> float:
    return max(shapely.hausdorff_distance(x, y) for x, y in zip(to_metric(a), to_metric(b), strict=True))


def test_shiyan_gauss_krueger_zones_are_the_ones_named() -> None:
    """The codes the messages suggest really are the zones whose central meridian is 111 E (Shiyan is ~110.8 E)."""
    for code, zone_prefix in ((METRIC_CRS, False), ("EPSG:4525", True), ("EPSG:4497", True)):
        crs = pyproj.CRS.from_user_input(code)
        params = {p.name: p.value for p in crs.coordinate_operation.params}
        assert params["Longitude of natural origin"] == 111
        assert crs.geodetic_crs.name == "China Geodetic Coordinate System 2000"
        assert (params["False easting"] > 1e6) is zone_prefix
    lon, _ = pyproj.Transformer.from_crs("EPSG:4545", "EPSG:4326", always_xy=True).transform(500000, 3_600_000)
    assert lon == pytest.approx(108), "EPSG:4545 is the zone west of the street's (CM 108 E)"


@pytest.mark.parametrize(("ext", "crs"), [("shp", METRIC_CRS), ("gpkg", "EPSG:4525"), ("gpkg", "EPSG:4490")])
def test_shapefile_and_geopackage_in_cgcs2000_land_within_a_metre(
    cli: Cli, tmp_path: Path, data_dir: Path, ext: str, crs: str
) -> None:
    bld = load_bundled_layers().buildings
    src = tmp_path / f"jmd.{ext}"
    bld.rename(columns={"building_id": "BH", "name": "MC", "floors": "CS"}).to_crs(crs).to_file(src, encoding="utf-8")
    rc, out, err = cli("geodata", "import", src, "--layer", "buildings", "--map", "building_id=BH,name=MC,floors=CS")
    assert rc == 0, err
    assert f"imported {len(bld)} buildings" in out
    got = load_layers(data_dir / "geodata").buildings
    assert list(got["building_id"]) == list(bld["building_id"])
    assert list(got["compound_id"]) == list(bld["compound_id"])  # filled in by location
    assert max_shift_m(np.asarray(got.geometry.values), np.asarray(bld.geometry.values)) < 1.0


def _drawing(tmp_path: Path, crs: str = METRIC_CRS) -> tuple[Path, int]:
    """A CAD drawing as a survey office sends it: compounds as closed polylines on layer XQ, each with its id
    written inside as TEXT, roads as open polylines on layer DL with their names written on them, a title
    block far off on layer TK."""
    layers = load_bundled_layers()
    cp = layers.compounds.to_crs(crs)
    doc = ezdxf.new("R2010")
    msp = doc.modelspace()
    for name in ("XQ", "DL", "TK"):
        doc.layers.add(name)
    for g, cid in zip(cp.geometry.values, cp["compound_id"], strict=True):
        msp.add_lwpolyline(list(g.exterior.coords), close=True, dxfattribs={"layer": "XQ"})
        p = g.representative_point()
        msp.add_text(cid, dxfattribs={"layer": "XQ", "insert": (p.x, p.y), "height": 2.5})
    for g, name in zip(layers.roads.to_crs(crs).geometry.values, layers.roads["name"], strict=True):
        msp.add_lwpolyline(list(g.coords), dxfattribs={"layer": "DL"})
        p = g.interpolate(0.5, normalized=True)
        msp.add_text(name, dxfattribs={"layer": "DL", "insert": (p.x, p.y), "height": 2.5})  # road names
    msp.add_text("车城路街道 1:500 地形图", dxfattribs={"layer": "TK", "insert": (0, 0), "height": 5})
    path = tmp_path / "dxt.dxf"
    doc.saveas(path)
    return path, len(cp)


def test_dxf_drawing_compounds_with_their_labels(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    path, n = _drawing(tmp_path)
    rc, out, err = cli("geodata", "import", path, "--layer", "compounds", "--crs", METRIC_CRS,
                       "--cad-layer", "XQ", "--map", "compound_id=Text,name=Text")  # fmt: skip
    assert rc == 0, err
    assert f"imported {n} compounds" in out
    cp = load_bundled_layers().compounds
    got = load_layers(data_dir / "geodata").compounds
    assert list(got["compound_id"]) == list(cp["compound_id"])
    assert list(got["community"]) == list(cp["community"])
    assert set(got["cad_layer"]) == {"XQ"}
    assert max_shift_m(np.asarray(got.geometry.values), np.asarray(cp.geometry.values)) < 1.0


def test_dxf_roads_and_an_unknown_cad_layer(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    path, _ = _drawing(tmp_path)
    rc, _, err = cli("geodata", "import", path, "--layer", "roads", "--crs", METRIC_CRS, "--cad-layer", "DLX")
    assert rc == 2
    assert "no CAD layer DLX" in err and "DL, TK, XQ" in err
    rc, _, err = cli("geodata", "import", path, "--layer", "roads", "--crs", METRIC_CRS,
                     "--cad-layer", "DL", "--map", "name=cad_handle")  # fmt: skip
    assert rc == 0, err
    roads = load_bundled_layers().roads
    got = load_layers(data_dir / "geodata").roads
    assert len(got) == len(roads)
    assert max_shift_m(np.asarray(got.geometry.values), np.asarray(roads.geometry.values)) < 1.0


def test_a_drawing_without_crs_is_refused_naming_the_option(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    path, _ = _drawing(tmp_path)
    rc, _, err = cli("geodata", "import", path, "--layer", "compounds", "--cad-layer", "XQ",
                     "--map", "compound_id=Text,name=Text")  # fmt: skip
    assert rc == 2
    assert "no coordinate system (a DXF drawing has none)" in err
    assert f"--crs {METRIC_CRS}" in err and "land in the street with it" in err
    assert not (data_dir / "geodata" / "compounds.geojson").exists()


def test_a_shapefile_without_prj_is_refused(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    cp = load_bundled_layers().compounds.to_crs("EPSG:4525")
    cp.to_file(tmp_path / "xq.shp", encoding="utf-8")
    (tmp_path / "xq.prj").unlink()
    rc, _, err = cli("geodata", "import", tmp_path / "xq.shp", "--layer", "compounds")
    assert rc == 2
    assert "a Shapefile without its .prj" in err
    assert "--crs EPSG:4525" in err, "the zone-prefixed easting is recognised"
    rc, _, err = cli("geodata", "import", tmp_path / "xq.shp", "--layer", "compounds", "--crs", "EPSG:4525",
                     "--map", "compound_id=compound_i,households=households,buildings=buildings")  # dBase: 10 chars
    assert rc == 0, err
    # Lon/lat without a .prj is refused too: WGS-84, CGCS2000 or GCJ-02 cannot be told apart by the numbers.
    load_bundled_layers().compounds.to_file(tmp_path / "ll.shp", encoding="utf-8")
    (tmp_path / "ll.prj").unlink()
    rc, _, err = cli("geodata", "import", tmp_path / "ll.shp", "--layer", "compounds")
    assert rc == 2
    assert "--crs EPSG:4490 (CGCS2000 lon/lat)" in err


@pytest.mark.parametrize("wrong", ["EPSG:4545", METRIC_CRS, "EPSG:4326"])
def test_a_wrong_crs_is_refused_saying_where_it_landed(cli: Cli, tmp_path: Path, data_dir: Path, wrong: str) -> None:
    """CM 108 E instead of 111 E lands ~280 km west; a zone-prefixed easting read without the prefix cannot be
    placed at all; metres read as lon/lat are no lon/lat. Each time the message names the CRS that fits."""
    cp = load_bundled_layers().compounds
    cp.to_crs("EPSG:4525" if wrong == METRIC_CRS else METRIC_CRS).to_file(tmp_path / "xq.gpkg")
    rc, _, err = cli("geodata", "import", tmp_path / "xq.gpkg", "--layer", "compounds", "--crs", wrong)
    assert rc == 2
    assert f"{len(cp)} of {len(cp)} features land outside the street" in err
    if wrong == "EPSG:4545":
        landed = cp.to_crs(METRIC_CRS).set_crs("EPSG:4545", allow_override=True).to_crs("EPSG:4326").total_bounds
        assert f"lon {landed[0]:.4f}..{landed[2]:.4f}" in err
        assert "km W of the street" in err
        km = int(err.split("~")[1].split(" km")[0].replace(",", ""))
        assert 250 < km < 320
    elif wrong == METRIC_CRS:
        assert "cannot be placed on the Earth" in err
    else:
        assert "are no lon/lat" in err
    assert f"With --crs {'EPSG:4525' if wrong == METRIC_CRS else METRIC_CRS}" in err
    assert not (data_dir / "geodata" / "compounds.geojson").exists()


def test_the_street_margin_lets_nearby_roads_in_but_not_a_neighbouring_town(cli: Cli, tmp_path: Path) -> None:
    road = load_bundled_layers().roads.to_crs(METRIC_CRS).iloc[[0]]
    road.translate(xoff=STREET_MARGIN_M / 2).to_frame("geometry").assign(name="near").to_file(tmp_path / "near.gpkg")
    rc, _, err = cli("geodata", "import", tmp_path / "near.gpkg", "--layer", "roads")
    assert rc == 0, err
    road.translate(xoff=STREET_MARGIN_M * 4).to_frame("geometry").assign(name="far").to_file(tmp_path / "far.gpkg")
    rc, _, err = cli("geodata", "import", tmp_path / "far.gpkg", "--layer", "roads")
    assert rc == 2
    assert "1 of 1 features land outside the street" in err
