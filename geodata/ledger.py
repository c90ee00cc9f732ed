"""The street's Excel device ledger (台账): read it as registry rows, and write the registry back in its form.

The first sheet, a header row, one device a row. Headers are Chinese or the registry's property names:
设备编号 (device_id), 设备类型 (kind: 燃气/水/电/摄像头 or the slug), 所属社区 (community: name or slug),
小区编号 (compound_id), 上报周期 (interval_s, seconds), 经度 (lon), 纬度 (lat) and optionally 坐标系 (crs);
a unit in brackets after a header is ignored (`上报周期(秒)`). Every other column is kept as a property.
A title row above the header is allowed (the header is the first row naming 设备编号 or device_id).

坐标系 is WGS84 (the default when the column or cell is empty), GCJ02 (Amap, Tencent), BD09 (Baidu) or
CGCS2000. GCJ-02 and BD-09 are converted to WGS-84 by `geodata/chinacrs.py` (the published forward
formulas, inverted iteratively to millimetres). CGCS2000 geographic coordinates are taken as WGS-84 as
they are: the two frames agree within a few centimetres here, far below a device's placement accuracy.

Validation itself is the importer's (`geodata/importer.py`); this module only turns cells into rows and
tells it which cell holds which field, so that every problem names its cell (`台账!F7`).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.contract import COMMUNITIES, KIND_LEDGER_NAMES, KINDS, Device
from core.registry import CORE_PROPERTIES, feature_from_device
from core.secrets import write_private
from geodata.chinacrs import TO_WGS84
from geodata.importer import FileProblem, Row

# field -> the ledger's header, in the order the export writes them.
HEADERS: dict[str, str] = {
    "device_id": "设备编号",
    "kind": "设备类型",
    "community": "所属社区",
    "compound_id": "小区编号",
    "interval_s": "上报周期",
    "lon": "经度",
    "lat": "纬度",
    "crs": "坐标系",
}
REQUIRED: tuple[str, ...] = (*CORE_PROPERTIES, "lon", "lat")
SHEET_TITLE = "设备台账"
HEADER_SCAN_ROWS = 20

# 坐标系 words (upper case, without '-', '_', ' ') -> the datum of chinacrs.TO_WGS84, or None: as it is.
CRS: dict[str, str | None] = {
    "WGS84": None, "EPSG:4326": None, "CGCS2000": None, "EPSG:4490": None,
    "GCJ02": "gcj02", "BD09": "bd09", "BD09LL": "bd09",
}
CRS_NAMES = "WGS84, GCJ02, BD09, CGCS2000"

_BY_HEADER = {**{h: f for f, h in HEADERS.items()}, **{f: f for f in HEADERS}}
_KIND_WORDS = {**{w: k for k, w in KIND_LEDGER_NAMES.items()}, **{k: k for k in KINDS}}
_KIND_EXPECTED = ", ".join([*KIND_LEDGER_NAMES.values(), *KINDS])
_COMMUNITY_WORDS = {
    **{slug: slug for slug in COMMUNITIES},
    **{name: slug for slug, name in COMMUNITIES.items()},
    **{name.removesuffix("社区"): slug for slug, name in COMMUNITIES.items()},  # 岩岭 for 岩岭社区
}
_COMMUNITY_EXPECTED = ", ".join([*COMMUNITIES.values(), *COMMUNITIES])
_UNIT = re.compile(r"[（(][^()（）]*[)）]$")
_PLAIN_SHEET = re.compile(r"^\w+$")


def _col_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def _header_key(value: Any) -> str:
    text = _UNIT.sub("", re.sub(r"\s+", "", str(value)) if value is not None else "")
    return text.lower() if text.lower() in _BY_HEADER else text  # Device_ID, LON: property names in any case


def _text(v: Any) -> str | None:
    """A cell as an identifier: Excel stores 1001 as a number; 1001.0 is the same id."""
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    text = str(v).strip()
    return text or None


def _word(v: Any) -> str | None:
    """A 设备类型 / 所属社区 cell: slugs in any case (GAS, Yanling)."""
    text = _text(v)
    return text.lower() if text and text.isascii() else text


def _number(v: Any) -> float | int | str | None:
    """A numeric cell, or numeric text; anything else is returned as text so that the check names it."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int | float):
        return v
    try:
        return float(str(v).strip())
    except ValueError:
        return str(v).strip()


def _extra(v: Any) -> Any:
    # A date in a ledger (安装日期) is a wall-clock Beijing date, not an instant: kept as the text it shows.
    if isinstance(v, dt.datetime) and v.time() == dt.time():
        return str(v.date())
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return str(v)
    if isinstance(v, str):
        return v.strip() or None
    return v


def read_ledger(data: bytes) -> list[Row]:
    """The first sheet's devices as importer rows, coordinates already in WGS-84."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, ValueError ... for a broken file
        raise FileProblem(f"not a readable Excel .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        if not wb.worksheets:
            raise FileProblem("the workbook has no sheet")
        ws = wb.worksheets[0]
        sheet = ws.title if _PLAIN_SHEET.match(ws.title) else "'" + ws.title.replace("'", "''") + "'"
        rows = list(ws.iter_rows(values_only=True))
    finally:
        wb.close()
    head_at, fields, extras = _header(sheet, rows)
    out: list[Row] = []
    crs_of: list[str | None] = []
    for r, values in enumerate(rows[head_at + 1:], start=head_at + 2):  # Excel rows count from 1
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue  # blank (often formatted-only) rows
        cells = {f: f"{sheet}!{_col_letter(c)}{r}" for f, c in fields.items()}
        row, datum = _row(f"{sheet} row {r}", cells, fields, extras, values)
        out.append(row)
        crs_of.append(datum)
    _to_wgs84(out, crs_of)
    return out


def _header(sheet: str, rows: list[tuple[Any, ...]]) -> tuple[int, dict[str, int], dict[str, int]]:
    """(row index of the header, field -> column, extra property -> column)."""
    for i, values in enumerate(rows[:HEADER_SCAN_ROWS]):
        keys = [_header_key(v) for v in values]
        if not any(_BY_HEADER.get(k) == "device_id" for k in keys):
            continue
        fields: dict[str, int] = {}
        extras: dict[str, int] = {}
        for c, key in enumerate(keys):
            if not key:
                continue
            f = _BY_HEADER.get(key)
            target = fields if f else extras
            name = f or key
            if name in target:
                first = _col_letter(target[name])
                raise FileProblem(f"{sheet}: columns {first} and {_col_letter(c)} are both {key}")
            target[name] = c
        missing = [f"{HEADERS[f]} ({f})" for f in REQUIRED if f not in fields]
        if missing:
            raise FileProblem(f"{sheet}!{i + 1}: header lacks column(s) {', '.join(missing)}")
        return i, fields, extras
    raise FileProblem(f"{sheet}: no header row naming 设备编号 (device_id) in its first {HEADER_SCAN_ROWS} rows")


def _row(label: str, cells: dict[str, str], fields: dict[str, int], extras: dict[str, int],
         values: tuple[Any, ...]) -> tuple[Row, str | None]:
    def cell(f: str) -> Any:
        c = fields.get(f)
        return values[c] if c is not None and c < len(values) else None

    problems: list[tuple[str, str]] = []
    props: dict[str, Any] = {"device_id": _text(cell("device_id")), "compound_id": _text(cell("compound_id"))}
    kind = _word(cell("kind"))
    if kind is None:
        problems.append(("kind", "设备类型 (kind) missing"))
    elif kind not in _KIND_WORDS:
        problems.append(("kind", f"unknown 设备类型 {kind!r} (expected one of {_KIND_EXPECTED})"))
    props["kind"] = _KIND_WORDS.get(kind or "", kind)
    comm = _word(cell("community"))
    if comm is None:
        problems.append(("community", "所属社区 (community) missing"))
    elif comm not in _COMMUNITY_WORDS:
        problems.append(("community", f"unknown 所属社区 {comm!r} (expected one of {_COMMUNITY_EXPECTED})"))
    props["community"] = _COMMUNITY_WORDS.get(comm or "", comm)
    props["interval_s"] = _number(cell("interval_s"))
    lon, lat = _number(cell("lon")), _number(cell("lat"))
    for f, v in (("lon", lon), ("lat", lat)):
        if v is None:
            problems.append((f, f"{HEADERS[f]} ({f}) missing"))
        elif not isinstance(v, int | float) or not math.isfinite(v):
            problems.append((f, f"{HEADERS[f]} ({f}) must be a number of degrees, got {v!r}"))
    crs = _text(cell("crs"))
    key = re.sub(r"[\s_-]", "", crs).upper() if crs else "WGS84"
    if key not in CRS:
        problems.append(("crs", f"unknown 坐标系 {crs!r} (expected one of {CRS_NAMES}; empty means WGS84)"))
    for name, c in extras.items():
        v = _extra(values[c]) if c < len(values) else None
        if v is not None:
            props[name] = v
    return Row(label, props, lon, lat, cells, problems), CRS.get(key)


def _to_wgs84(rows: list[Row], crs_of: list[str | None]) -> None:
    """Convert the GCJ-02 / BD-09 rows in one vectorised call per datum."""
    for datum, conv in TO_WGS84.items():
        idx = [i for i, d in enumerate(crs_of) if d == datum and not any(
            f in ("lon", "lat", "crs") for f, _ in rows[i].problems)]
        if not idx:
            continue
        x, y = conv(np.array([float(rows[i].lon) for i in idx]), np.array([float(rows[i].lat) for i in idx]))
        # Rounded to 1e-9 degree (0.1 mm): Excel keeps 15 significant digits, so the exported ledger
        # then reads back to the very same numbers.
        for i, lon, lat in zip(idx, np.atleast_1d(x), np.atleast_1d(y), strict=True):
            rows[i].lon, rows[i].lat = round(float(lon), 9), round(float(lat), 9)


def _cell_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return orjson.dumps(v).decode()  # nested values as JSON text


def ledger_bytes(devices: Iterable[Device]) -> bytes:
    """The registry as the street's ledger: the Chinese headers, WGS84, other properties after them."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    feats = [feature_from_device(d) for d in devices]
    extra_cols: dict[str, None] = {}
    for f in feats:
        for k in f["properties"]:
            if k not in CORE_PROPERTIES:
                extra_cols.setdefault(k, None)
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE
    ws.append([*HEADERS.values(), *extra_cols])
    for c in ws[1]:
        c.font = Font(bold=True)
    ws.freeze_panes = "A2"
    for f in feats:
        p = f["properties"]
        lon, lat = f["geometry"]["coordinates"]
        ws.append([
            p["device_id"], KIND_LEDGER_NAMES.get(p["kind"], p["kind"]),
            COMMUNITIES.get(p["community"], p["community"]),
            p["compound_id"], p["interval_s"], lon, lat, "WGS84",
            *(_cell_value(p.get(k)) for k in extra_cols),
        ])
    for col, width in zip("ABCDEFGH", (12, 8, 14, 12, 10, 13, 12, 9), strict=True):
        ws.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_ledger(path: Path, devices: Iterable[Device]) -> None:
    """Write the ledger atomically, 0600 like every file the system writes (a ledger's other columns may
    hold names and phone numbers)."""
    write_private(Path(path), ledger_bytes(devices))
