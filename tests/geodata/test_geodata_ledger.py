"""`devices import FILE.xlsx` and `devices export --xlsx`: the street's Excel ledger (台账), built here with openpyxl.

The GCJ-02 / BD-09 forward formulas are restated below on purpose (plain `math`, scalar) so that the
import's conversion is checked against an independent implementation, not against itself.
"""

from __future__ import annotations

import datetime as dt
import math
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from openpyxl import Workbook, load_workbook

from core.registry import bundled_registry_path, feature_from_device, load_registry
from core.settings import Settings

Cli = Callable[..., tuple[int, str, str]]
SAMPLE = orjson.loads(bundled_registry_path().read_bytes())["features"]
G1 = SAMPLE[0]  # G-000001, gas, yanling, YL-01
LON, LAT = G1["geometry"]["coordinates"]
CN = ["设备编号", "设备类型", "所属社区", "小区编号", "上报周期(秒)", "经度", "纬度", "坐标系", "安装位置"]
SLUG = ["device_id", "kind", "community", "compound_id", "interval_s", "lon", "lat", "crs", "install"]


def gcj02(lon: float, lat: float) -> tuple[float, float]:
    """WGS-84 -> GCJ-02, the widely published formula (Krasovsky constants)."""
    a, ee = 6378245.0, 0.00669342162296594323
    x, y = lon - 105.0, lat - 35.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlon += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlon += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - ee * math.sin(rad) ** 2
    dlat = (dlat * 180.0) / ((a * (1 - ee)) / (magic * math.sqrt(magic)) * math.pi)
    dlon = (dlon * 180.0) / (a / math.sqrt(magic) * math.cos(rad) * math.pi)
    return lon + dlon, lat + dlat


def bd09(lon: float, lat: float) -> tuple[float, float]:
    """WGS-84 -> BD-09 (GCJ-02, then Baidu's shift)."""
    x, y = gcj02(lon, lat)
    xpi = math.pi * 3000.0 / 180.0
    z = math.sqrt(x * x + y * y) + 0.00002 * math.sin(y * xpi)
    theta = math.atan2(y, x) + 0.000003 * math.cos(x * xpi)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return math.hypot((lon1 - lon2) * 111_320.0 * math.cos(math.radians(lat1)), (lat1 - lat2) * 110_940.0)


def row(did: str = "G-910001", **over: Any) -> list[Any]:
    """A good ledger row (G-000001's place), Chinese words; `over` by slug header."""
    values = dict(zip(SLUG, [did, "燃气", "岩岭社区", "YL-01", 10, LON, LAT, "WGS84", "厨房"], strict=True))
    values.update(over)
    return [values[k] for k in SLUG]


def ledger(path: Path, rows: list[list[Any]], header: list[str] = CN, title: str | None = None,
           sheet: str = "台账") -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    if title:
        ws.append([title])
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.create_sheet("说明").append(["设备编号", "not a device sheet"])  # only the first sheet counts
    wb.save(path)
    return path


@pytest.fixture
def registry(cli: Cli, geo_settings: Settings) -> Path:
    assert cli("devices", "list", "--json")[0] == 0  # seeds the effective registry
    return geo_settings.registry_path


def import_bad(cli: Cli, registry: Path, src: Path, *needles: str) -> str:
    before = registry.read_bytes(), registry.stat().st_mtime_ns
    rc, out, err = cli("devices", "import", src)
    assert rc == 2, (out, err)
    for needle in needles:
        assert needle in err, err
    assert "nothing imported" in err
    assert (registry.read_bytes(), registry.stat().st_mtime_ns) == before
    return err


def test_chinese_ledger_with_title_row_imports(cli: Cli, registry: Path, tmp_path: Path) -> None:
    src = ledger(tmp_path / "台账.xlsx", [
        row("G-910001"),
        row("W-910001", kind="水", community="岩岭", interval_s="30"),  # name without 社区, numeric text
        row("P-910001", kind="电", crs=None),  # empty 坐标系: WGS84
        [None] * len(SLUG),  # a blank row is skipped
        row("C-910001", kind="摄像头", install=None),
    ], title="车城路街道 物联感知设备台账 2026年12月")
    wb = load_workbook(src)
    wb.worksheets[0]["J2"] = "安装日期"
    wb.worksheets[0]["J3"] = dt.datetime(2026, 11, 3)
    wb.save(src)
    rc, out, err = cli("devices", "import", src)
    assert rc == 0, err
    assert "added 4" in out
    reg = load_registry(registry)
    w = reg["W-910001"]
    assert (w.kind, w.community, w.compound_id, w.interval_s) == ("water", "yanling", "YL-01", 30.0)
    assert (w.lon, w.lat) == (LON, LAT)
    assert reg["G-910001"].extra == {"安装位置": "厨房", "安装日期": "2026-11-03"}
    assert reg["C-910001"].kind == "camera" and "安装位置" not in reg["C-910001"].extra
    assert reg["P-910001"].kind == "power"
    assert len(reg) == len(SAMPLE) + 4


def test_slug_headers_and_slug_values_import(cli: Cli, registry: Path, tmp_path: Path) -> None:
    src = ledger(tmp_path / "ledger.xlsx", [row("G-910002", kind="GAS", community="Yanling", crs="wgs-84")],
                 header=[h.upper() if h in ("lon", "lat") else h for h in SLUG])
    rc, _, err = cli("devices", "import", src)
    assert rc == 0, err
    dev = load_registry(registry)["G-910002"]
    assert (dev.kind, dev.community, dev.extra) == ("gas", "yanling", {"install": "厨房"})


@pytest.mark.parametrize(("crs", "to"), [
    ("WGS84", lambda lon, lat: (lon, lat)),
    ("CGCS2000", lambda lon, lat: (lon, lat)),  # taken as WGS-84 (centimetres apart)
    ("GCJ02", gcj02),
    ("GCJ-02", gcj02),
    ("BD09", bd09),
])
def test_each_coordinate_system_lands_on_the_wgs84_source(
    cli: Cli, registry: Path, tmp_path: Path, crs: str, to: Callable[[float, float], tuple[float, float]]
) -> None:
    lon, lat = to(LON, LAT)
    src = ledger(tmp_path / "c.xlsx", [row("G-910003", lon=lon, lat=lat, crs=crs)])
    rc, _, err = cli("devices", "import", src)
    assert rc == 0, err
    dev = load_registry(registry)["G-910003"]
    assert metres(dev.lon, dev.lat, LON, LAT) < 1.0
    assert "坐标系" not in dev.extra and "crs" not in dev.extra


def test_gcj02_numbers_read_as_wgs84_are_hundreds_of_metres_off(cli: Cli, registry: Path, tmp_path: Path) -> None:
    lon, lat = gcj02(LON, LAT)
    assert metres(lon, lat, LON, LAT) > 200  # why the 坐标系 column matters
    src = ledger(tmp_path / "c.xlsx", [row("G-910004", lon=lon, lat=lat, crs="WGS84")])
    import_bad(cli, registry, src, "台账!F2 (device_id G-910004)", "m outside compound YL-01")


@pytest.mark.parametrize(("over", "cell", "needle"), [
    ({"device_id": "has space"}, "A3", "does not match"),
    ({"device_id": None}, "A3", "device_id missing"),
    ({"kind": "气"}, "B3", "unknown 设备类型 '气'"),
    ({"kind": None}, "B3", "设备类型 (kind) missing"),
    ({"community": "白浪社区"}, "C3", "unknown 所属社区 '白浪社区'"),
    ({"compound_id": "ZZ-99"}, "D3", "'ZZ-99' is not in the GIS layers"),
    ({"community": "艳湖社区"}, "D3", "compound_id 'YL-01' is in community 'yanling', not 'yanhu'"),
    ({"interval_s": "十分钟"}, "E3", "interval_s must be a number"),
    ({"interval_s": 0}, "E3", "interval_s must be positive"),
    ({"interval_s": None}, "E3", "interval_s missing"),
    ({"lon": "东经110.78"}, "F3", "经度 (lon) must be a number of degrees"),
    ({"lat": None}, "G3", "纬度 (lat) missing"),
    ({"lat": 95.0}, "G3", "out of range"),
    ({"crs": "WGS72"}, "H3", "unknown 坐标系 'WGS72'"),
])
def test_a_bad_cell_is_named_and_nothing_changes(
    cli: Cli, registry: Path, tmp_path: Path, over: dict[str, Any], cell: str, needle: str
) -> None:
    src = ledger(tmp_path / "bad.xlsx", [row("G-910005"), row("G-910006", **over)])
    err = import_bad(cli, registry, src, f"台账!{cell}", needle, "1 problem(s)")
    assert "台账!A2" not in err and "row 2" not in err  # the good row is not blamed


def test_duplicates_name_both_cells(cli: Cli, registry: Path, tmp_path: Path) -> None:
    src = ledger(tmp_path / "dup.xlsx", [row("G-910007"), row("G-910008"), row("G-910007")])
    import_bad(cli, registry, src, "台账!A2", "台账!A4", "duplicate device_id 'G-910007'")


def test_sheet_names_with_spaces_are_quoted(cli: Cli, registry: Path, tmp_path: Path) -> None:
    src = ledger(tmp_path / "s.xlsx", [row("G-910009", kind="气")], sheet="Sheet 1")
    import_bad(cli, registry, src, "'Sheet 1'!B2")


def test_file_level_problems(cli: Cli, registry: Path, tmp_path: Path) -> None:
    missing = ledger(tmp_path / "m.xlsx", [row()[:5]], header=CN[:5])
    import_bad(cli, registry, missing, "header lacks column(s) 经度 (lon), 纬度 (lat)")
    twice = ledger(tmp_path / "t.xlsx", [[*row(), "燃气"]], header=[*CN, "设备类型"])
    import_bad(cli, registry, twice, "columns B and J are both 设备类型")
    nohead = ledger(tmp_path / "n.xlsx", [row()], header=["编号", "类型"])
    import_bad(cli, registry, nohead, "no header row naming 设备编号")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    import_bad(cli, registry, broken, "not a readable Excel .xlsx workbook")
    empty = ledger(tmp_path / "e.xlsx", [])
    import_bad(cli, registry, empty, "no devices in file")
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    import_bad(cli, registry, old, "an Excel 97-2003 .xls workbook: save it as .xlsx")


def test_export_then_import_round_trips(cli: Cli, registry: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Give the registry a GCJ-02-entered device and a numeric extra, so the round trip covers them.
    src = ledger(tmp_path / "in.xlsx", [row("G-910010", lon=gcj02(LON, LAT)[0], lat=gcj02(LON, LAT)[1],
                                            crs="GCJ02", install=3)])
    assert cli("devices", "import", src)[0] == 0
    out = tmp_path / "export.xlsx"
    rc, stdout, err = cli("devices", "export", "--xlsx", out)
    assert rc == 0, err
    assert f"wrote {len(SAMPLE) + 1} devices" in stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # other columns may hold names and phone numbers
    ws = load_workbook(out).worksheets[0]
    head = [c.value for c in ws[1]]
    assert head[:8] == ["设备编号", "设备类型", "所属社区", "小区编号", "上报周期", "经度", "纬度", "坐标系"]
    first = [c.value for c in ws[2]]
    assert first[:5] == ["G-000001", "燃气", "岩岭社区", "YL-01", 10] and first[7] == "WGS84"

    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv("SC_REGISTRY_FILE", str(tmp_path / "fresh" / "empty.geojson"))
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    rc, _, err = cli("devices", "import", out)
    assert rc == 0, err

    def features(path: Path) -> dict[str, Any]:
        out = {}
        for d in load_registry(path).values():
            f = feature_from_device(d)
            f["properties"] = {k: v for k, v in f["properties"].items() if v is not None}  # empty cell = absent
            out[d.device_id] = f
        return out

    assert features(tmp_path / "fresh" / "empty.geojson") == features(registry)
    assert load_registry(tmp_path / "fresh" / "empty.geojson")["G-910010"].extra["安装位置"] == 3
