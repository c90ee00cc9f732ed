"""`smartcommunity geodata import` and `geodata synth` end to end, through the real CLI."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import shapely
from shapely.geometry import Polygon

from core.contract import COMMUNITIES, KINDS
from core.registry import load_registry
from geodata.checks import check_registry
from geodata.chinacrs import wgs84_to_bd09, wgs84_to_gcj02
from geodata.layers import load_bundled_layers, load_layers, to_metric

Cli = Callable[..., tuple[int, str, str]]


def offset(geoms: np.ndarray, fn) -> np.ndarray:  # type: ignore[no-untyped-def]
    return shapely.transform(geoms, lambda xy: np.column_stack(fn(xy[:, 0], xy[:, 1])))


def max_shift_m(a: np.ndarray, b: np.ndarray) -> float:
    return max(shapely.hausdorff_distance(x, y) for x, y in zip(to_metric(a), to_metric(b), strict=True))


def test_shapefile_in_gk_zone_with_gcj_offset_and_chinese_fields(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    cp = load_bundled_layers().compounds
    src = cp.rename(columns={"compound_id": "编号", "name": "名称", "households": "户数"})
    src = src.set_geometry(offset(np.asarray(cp.geometry.values), wgs84_to_gcj02), crs="EPSG:4326")
    src.to_crs("EPSG:4546").to_file(tmp_path / "xq.shp", encoding="utf-8")
    rc, out, err = cli("geodata", "import", tmp_path / "xq.shp", "--layer", "compounds",
                       "--map", "compound_id=编号,name=名称,households=户数", "--from", "gcj02")  # fmt: skip
    assert rc == 0, err
    assert "imported 40 compounds" in out
    got = load_layers(data_dir / "geodata")
    assert got.sources["compounds"] == data_dir / "geodata" / "compounds.geojson"
    assert list(got.compounds["name"]) == list(cp["name"])
    assert list(got.compounds["households"]) == list(cp["households"])
    assert max_shift_m(np.asarray(got.compounds.geometry.values), np.asarray(cp.geometry.values)) < 0.05


def test_csv_points_in_bd09(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    shops = load_bundled_layers().shops
    bx, by = wgs84_to_bd09(shops.geometry.x.to_numpy(), shops.geometry.y.to_numpy())
    df = pd.DataFrame({"店铺编号": shops["shop_id"], "店名": shops["name"], "类别": shops["category"],
                       "community": shops["community"], "lon": bx, "lat": by})  # fmt: skip
    df.to_csv(tmp_path / "shops.csv", index=False)
    rc, _, err = cli("geodata", "import", tmp_path / "shops.csv", "--layer", "shops",
                     "--map", "shop_id=店铺编号,name=店名,category=类别", "--from", "bd09")  # fmt: skip
    assert rc == 0, err
    got = load_layers(data_dir / "geodata").shops
    assert max_shift_m(np.asarray(got.geometry.values), np.asarray(shops.geometry.values)) < 0.05


def _bowtie_layer(tmp_path: Path) -> Path:
    cp = load_bundled_layers().compounds.copy()
    x0, y0, x1, y1 = cp.geometry.iloc[0].bounds
    cp.loc[0, "geometry"] = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])  # self-intersecting
    path = tmp_path / "bad.geojson"
    cp.to_file(path, driver="GeoJSON")
    return path


def test_invalid_geometry_is_reported_then_fixed(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    src = _bowtie_layer(tmp_path)
    rc, _, err = cli("geodata", "import", src, "--layer", "compounds")
    assert rc == 2
    assert "feature 0 (compound_id YL-01): invalid geometry: Self-intersection" in err
    assert not (data_dir / "geodata" / "compounds.geojson").exists()
    rc, _, err = cli("geodata", "import", src, "--layer", "compounds", "--fix-invalid")
    assert rc == 0, err
    assert "repaired" in err
    assert shapely.is_valid(load_layers(data_dir / "geodata").compounds.geometry.iloc[0])


def test_ids_types_and_namespace_are_checked(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    units = load_bundled_layers().units.copy()
    units.loc[0, "unit_id"] = "YL-01"  # a compound's id
    units.loc[1, "unit_id"] = "bad id"
    units.to_file(tmp_path / "u.geojson", driver="GeoJSON")
    rc, _, err = cli("geodata", "import", tmp_path / "u.geojson", "--layer", "units")
    assert rc == 2
    assert "unit_id 'YL-01' is already used in layer compounds" in err
    assert "feature 1 (unit_id bad id): unit_id 'bad id' does not match" in err
    rc, _, err = cli("geodata", "import", tmp_path / "u.geojson", "--layer", "compounds")
    assert rc == 2 and "Point, layer compounds needs Polygon/MultiPolygon" in err
    rc, _, err = cli("geodata", "import", tmp_path / "u.geojson", "--layer", "units", "--map", "name=名称")
    assert rc == 2 and "--map: no column 名称" in err
    assert not (data_dir / "geodata").exists()


def test_imported_unit_becomes_a_device_target(cli: Cli, tmp_path: Path, data_dir: Path) -> None:
    units = load_bundled_layers().units.copy()
    new = units.iloc[[0]].copy()
    new["unit_id"], new["name"] = "U-NEW-01", "新建养老服务站"
    pd.concat([units, new]).to_file(tmp_path / "u.geojson", driver="GeoJSON")
    assert cli("geodata", "import", tmp_path / "u.geojson", "--layer", "units")[0] == 0
    pt = new.geometry.iloc[0]
    dev = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [pt.x, pt.y]},
           "properties": {"device_id": "C-NEW-1", "kind": "camera", "community": new["community"].iloc[0],
                          "compound_id": "U-NEW-01", "interval_s": 30}}  # fmt: skip
    (tmp_path / "d.geojson").write_bytes(orjson.dumps({"type": "FeatureCollection", "features": [dev]}))
    rc, out, err = cli("devices", "import", tmp_path / "d.geojson")
    assert rc == 0, err
    assert "added 1" in out


def test_layers_verb(cli: Cli) -> None:
    rc, out, _ = cli("geodata", "layers", "--json")
    assert rc == 0
    rows = {r["layer"]: r for r in orjson.loads(out)}
    assert rows["compounds"]["features"] == 40


def test_synth_small_and_large_registries_are_valid(cli: Cli, tmp_path: Path) -> None:
    layers = load_bundled_layers()
    for n in (200, 4000):
        out_file = tmp_path / f"synth-{n}.geojson"
        rc, _, err = cli("geodata", "synth", "--devices", n, "--out", out_file)
        assert rc == 0, err
        reg = load_registry(out_file)
        assert len(reg) == n
        assert {(d.community, d.kind) for d in reg.values()} == set(itertools.product(COMMUNITIES, KINDS))
        assert check_registry(layers, out_file) == []
    assert cli("geodata", "synth", "--devices", "0")[0] == 2
