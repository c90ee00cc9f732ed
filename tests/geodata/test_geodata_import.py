"""`smartcommunity devices import|list`: every validation rule with a real file, all-or-nothing."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.registry import RegistryWatcher, bundled_registry_path, load_registry
from core.settings import Settings
from geodata.layers import load_bundled_layers

Cli = Callable[..., tuple[int, str, str]]
SAMPLE = orjson.loads(bundled_registry_path().read_bytes())["features"]


def feat(device_id: str = "G-900001", **props: Any) -> dict[str, Any]:
    """A valid new gas device in YL-01 (copied from the sample's first device), with overrides."""
    f = copy.deepcopy(SAMPLE[0])
    f["properties"]["device_id"] = device_id
    for k, v in props.items():
        if v is _DROP:
            f["properties"].pop(k)
        else:
            f["properties"][k] = v
    return f


_DROP = object()


def fc(*features: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "FeatureCollection", "features": list(features)})


def east_of(compound_id: str, metres: float) -> tuple[float, float]:
    """A point exactly `metres` east of the compound's easternmost vertex (so that far outside it)."""
    poly = load_bundled_layers().places[compound_id].geometry
    x, y = max(poly.exterior.coords, key=lambda c: c[0])
    return x + metres / (111_320.0 * math.cos(math.radians(y))), y


@pytest.fixture
def registry(cli: Cli, geo_settings: Settings) -> Path:
    rc, _, _ = cli("devices", "list", "--json")  # seeds the effective registry
    assert rc == 0
    return geo_settings.registry_path


def import_bad(cli: Cli, registry: Path, tmp_path: Path, data: bytes, *needles: str, name: str = "in.geojson") -> str:
    before = registry.read_bytes(), registry.stat().st_mtime_ns
    src = tmp_path / name
    src.write_bytes(data)
    rc, out, err = cli("devices", "import", src)
    assert rc == 2, (out, err)
    for needle in needles:
        assert needle in err, err
    assert (registry.read_bytes(), registry.stat().st_mtime_ns) == before  # nothing changed
    return err


def test_list_json_is_the_registry_with_lon_lat(cli: Cli, registry: Path) -> None:
    rc, out, _ = cli("devices", "list", "--json")
    assert rc == 0
    rows = orjson.loads(out)
    assert len(rows) == len(SAMPLE)
    for key in ("device_id", "kind", "community", "compound_id", "interval_s", "lon", "lat"):
        assert key in rows[0]
    assert rows[0]["lon"] == SAMPLE[0]["geometry"]["coordinates"][0]
    rc, out, _ = cli("devices", "list", "--community", "yanhu", "--kind", "water")
    assert rc == 0 and "W-" in out and "gas" not in out


def test_good_geojson_adds_and_updates(cli: Cli, registry: Path, tmp_path: Path) -> None:
    existing = copy.deepcopy(SAMPLE[1])
    existing["properties"]["interval_s"] = 20
    src = tmp_path / "ok.geojson"
    src.write_bytes(fc(feat("G-900001"), existing))
    rc, out, err = cli("devices", "import", src)
    assert rc == 0, err
    assert "added 1, updated 1" in out
    reg = load_registry(registry)
    assert reg["G-900001"].compound_id == "YL-01"
    assert reg[existing["properties"]["device_id"]].interval_s == 20
    assert len(reg) == len(SAMPLE) + 1
    rc, out, _ = cli("devices", "import", src)  # idempotent
    assert rc == 0 and "added 0, updated 0" in out


def test_import_is_seen_by_a_running_watcher(cli: Cli, registry: Path, tmp_path: Path) -> None:
    watcher = RegistryWatcher(registry, poll_s=0.01)
    assert "G-900002" not in watcher.current()
    src = tmp_path / "ok.geojson"
    src.write_bytes(fc(feat("G-900002")))
    assert cli("devices", "import", src)[0] == 0
    watcher.refresh(force=True)
    assert "G-900002" in watcher.current()


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        ({"device_id": "-starts-with-dash"}, "does not match"),
        ({"device_id": "has space"}, "does not match"),
        ({"device_id": "x" * 65}, "does not match"),
        ({"device_id": _DROP}, "device_id missing"),
        ({"kind": "smoke"}, "unknown kind 'smoke'"),
        ({"community": "nowhere"}, "unknown community 'nowhere'"),
        ({"interval_s": _DROP}, "interval_s missing"),
        ({"interval_s": 0}, "interval_s must be positive"),
        ({"interval_s": -5}, "interval_s must be positive"),
        ({"interval_s": "10"}, "interval_s must be a number"),
        ({"interval_s": True}, "interval_s must be a number"),
        ({"compound_id": "ZZ-99"}, "'ZZ-99' is not in the GIS layers"),
        ({"compound_id": _DROP}, "compound_id missing"),
        ({"community": "yanhu"}, "compound_id 'YL-01' is in community 'yanling', not 'yanhu'"),
    ],
)
def test_bad_property_is_rejected(cli: Cli, registry: Path, tmp_path: Path, props: dict[str, Any], needle: str) -> None:
    bad = feat("G-900003")
    for k, v in props.items():
        if v is _DROP:
            bad["properties"].pop(k)
        else:
            bad["properties"][k] = v
    err = import_bad(cli, registry, tmp_path, fc(feat("G-900004"), bad), "features[1]", needle)
    assert "features[0]" not in err  # the good row is not blamed


@pytest.mark.parametrize(
    ("geometry", "needle"),
    [
        ({"type": "Point", "coordinates": ["110.78", 32.65]}, "bad lon/lat"),
        ({"type": "Point", "coordinates": [210.0, 32.65]}, "out of range"),
        ({"type": "Point", "coordinates": [110.78]}, "bad Point coordinates"),
        ({"type": "Polygon", "coordinates": []}, "geometry must be a Point"),
        (None, "geometry must be a Point"),
    ],
)
def test_bad_geometry_is_rejected(
    cli: Cli, registry: Path, tmp_path: Path, geometry: dict[str, Any] | None, needle: str
) -> None:
    bad = feat("G-900005")
    bad["geometry"] = geometry
    import_bad(cli, registry, tmp_path, fc(bad), "features[0] (device_id G-900005)", needle)


def test_point_outside_compound_beyond_tolerance(cli: Cli, registry: Path, tmp_path: Path) -> None:
    far, near = feat("G-900006"), feat("G-900007")
    far["geometry"]["coordinates"] = list(east_of("YL-01", 100))
    near["geometry"]["coordinates"] = list(east_of("YL-01", 10))
    err = import_bad(cli, registry, tmp_path, fc(near, far), "features[1]", "100 m outside compound YL-01")
    assert "features[0]" not in err
    src = tmp_path / "near.geojson"
    src.write_bytes(fc(near))  # 10 m out is within the 30 m tolerance
    assert cli("devices", "import", src)[0] == 0


def test_duplicates_within_file_name_both_rows(cli: Cli, registry: Path, tmp_path: Path) -> None:
    import_bad(cli, registry, tmp_path, fc(feat("G-900008"), feat("G-900009"), feat("G-900008")),
               "features[0]", "features[2]", "duplicate device_id 'G-900008'")  # fmt: skip


def test_every_bad_row_is_listed(cli: Cli, registry: Path, tmp_path: Path) -> None:
    err = import_bad(
        cli, registry, tmp_path,
        fc(feat("G-900010", kind="smoke"), feat("G-900011"), feat("G-900012", interval_s=-1)),
        "features[0]", "features[2]", "2 problem(s)",
    )  # fmt: skip
    assert "features[1]" not in err


def test_unit_and_shop_are_valid_targets(cli: Cli, registry: Path, tmp_path: Path) -> None:
    layers = load_bundled_layers()
    unit, shop = layers.places["U-YL-01"], layers.places["S-GY-02"]
    a = feat("C-900001", kind="camera", compound_id="U-YL-01", community=unit.community, interval_s=30)
    a["geometry"]["coordinates"] = [unit.geometry.x, unit.geometry.y]
    b = feat("P-900001", kind="power", compound_id="S-GY-02", community=shop.community, interval_s=15)
    b["geometry"]["coordinates"] = [shop.geometry.x, shop.geometry.y]
    src = tmp_path / "ok.geojson"
    src.write_bytes(fc(a, b))
    rc, out, err = cli("devices", "import", src)
    assert rc == 0, err
    assert "added 2" in out


def test_not_geojson_at_all(cli: Cli, registry: Path, tmp_path: Path) -> None:
    import_bad(cli, registry, tmp_path, b"{oops", "file", "not valid JSON")
    import_bad(cli, registry, tmp_path, b'{"type": "Feature"}', "not a GeoJSON FeatureCollection")
    import_bad(cli, registry, tmp_path, fc(), "no devices in file")


def _csv(*rows: str) -> bytes:
    return ("device_id,kind,community,compound_id,interval_s,lon,lat,install\n" + "\n".join(rows) + "\n").encode()


def test_csv_import(cli: Cli, registry: Path, tmp_path: Path) -> None:
    lon, lat = SAMPLE[0]["geometry"]["coordinates"]
    src = tmp_path / "devices.csv"
    src.write_bytes(b"\xef\xbb\xbf" + _csv(f"W-900001,water,yanling,YL-01,30,{lon},{lat},泵房"))
    rc, out, err = cli("devices", "import", src)
    assert rc == 0, err
    assert "added 1, updated 0" in out
    dev = load_registry(registry)["W-900001"]
    assert (dev.kind, dev.interval_s, dev.lon, dev.lat, dev.extra["install"]) == (
        "water",
        30.0,
        lon,
        lat,
        "泵房",
    )


def test_csv_bad_rows_are_named_by_line(cli: Cli, registry: Path, tmp_path: Path) -> None:
    lon, lat = SAMPLE[0]["geometry"]["coordinates"]
    data = _csv(
        f"W-900002,water,yanling,YL-01,30,{lon},{lat},",
        f"W-900003,water,yanling,YL-01,abc,{lon},{lat},",
        f"W-900004,water,yanling,YL-01,30,,{lat},",
    )
    import_bad(cli, registry, tmp_path, data, "line 3 (device_id W-900003)", "interval_s must be a number",
               "line 4 (device_id W-900004)", "bad lon/lat", name="d.csv")  # fmt: skip


def test_csv_without_lon_lat_columns(cli: Cli, registry: Path, tmp_path: Path) -> None:
    data = b"device_id,kind,community,compound_id,interval_s\nG-1,gas,yanling,YL-01,10\n"
    import_bad(cli, registry, tmp_path, data, "CSV lacks column(s) lon, lat", name="d.csv")


def test_list_json_output_imports_back(cli: Cli, registry: Path, tmp_path: Path) -> None:
    rc, out, _ = cli("devices", "list", "--json")
    src = tmp_path / "dump.json"
    src.write_text(out)
    rc, out, err = cli("devices", "import", src)
    assert rc == 0, err
    assert f"added 0, updated 0 ({len(SAMPLE)} unchanged" in out
