"""`devices import`: validate every row of a GeoJSON/CSV file or Excel ledger, then merge into the registry
atomically.

All-or-nothing: any bad row raises DeviceImportError listing every problem, and the registry is untouched.
Each problem names the row (CSV line, GeoJSON feature) or, for an Excel ledger (`geodata/ledger.py`), the
cell (`Sheet1!F7`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gc
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from core.contract import COMMUNITIES, DEVICE_ID_RE, KINDS, Device
from core.registry import (
    CORE_PROPERTIES,
    RegistryError,
    ensure_registry,
    feature_from_device,
    load_registry,
    write_registry,
)
from geodata import LOCATION_TOLERANCE_M

if TYPE_CHECKING:
    from core.settings import Settings
    from geodata.layers import Layers

CSV_REQUIRED: tuple[str, ...] = (*CORE_PROPERTIES, "lon", "lat")


@dataclass(frozen=True, slots=True)
class RowProblem:
    row: str  # "line 7" (CSV, physical line), "features[3]" (GeoJSON, 0-based), "Sheet1!F7" (Excel) or "file"
    device_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" (device_id {self.device_id})" if self.device_id else ""
        return f"{self.row}{who}: {self.reason}"


class DeviceImportError(ValueError):
    """A device file with at least one bad row; `.problems` lists every one."""

    def __init__(self, source: Path, problems: list[RowProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported:\n{lines}")


@dataclass(frozen=True)
class ImportReport:
    registry: Path
    source: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    total: int = 0  # devices in the registry after the import

    def summary(self) -> str:
        return (
            f"added {len(self.added)}, updated {len(self.updated)} "
            f"({len(self.unchanged)} unchanged; registry now {self.total} devices)"
        )


@dataclass(slots=True)
class Row:
    """One device as read from a file, before any check (a reader per format builds these)."""

    label: str
    props: dict[str, Any]
    lon: Any
    lat: Any
    # Excel: field (a property, "lon", "lat" or "crs") -> its cell, so that a problem names the cell.
    cells: dict[str, str] | None = None
    # (field, reason) found while reading (e.g. an unknown 设备类型 word); that field is not checked again.
    problems: list[tuple[str, str]] = field(default_factory=list)

    def where(self, what: str | None) -> str:
        return self.cells.get(what, self.label) if self.cells and what else self.label

Problem = tuple[str | None, str]  # (field it is about, if one; reason)


def _read_rows(source: Path, data: bytes) -> Iterator[Row]:
    text_start = data.lstrip()[:1]
    if source.suffix.lower() == ".csv" or (source.suffix.lower() not in (".json", ".geojson")
                                           and text_start not in (b"{", b"[")):  # fmt: skip
        yield from _csv_rows(data)
    else:
        yield from _json_rows(data)


def _csv_rows(data: bytes) -> Iterator[Row]:
    try:
        text = data.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not UTF-8 text ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in CSV_REQUIRED if c not in cols]
    if missing:
        raise FileProblem(f"CSV lacks column(s) {', '.join(missing)} (needs {', '.join(CSV_REQUIRED)})")
    reader.fieldnames = cols
    for rec in reader:
        props: dict[str, Any] = {}
        for k, v in rec.items():
            if k is None or k in ("lon", "lat"):
                continue
            v = (v or "").strip()
            if k in CORE_PROPERTIES:
                props[k] = v or None
            elif v:
                props[k] = v
        iv = props.get("interval_s")
        if iv is not None:
            props["interval_s"] = _csv_number(iv)
        yield Row(f"line {reader.line_num}", props, _csv_number(rec.get("lon")), _csv_number(rec.get("lat")))


def _csv_number(text: str | None) -> Any:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # left as text so the check names it


def _json_rows(data: bytes) -> Iterator[Row]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FileProblem(f"not valid JSON ({exc})") from None
    if isinstance(doc, list):  # the output of `devices list --json` imports too
        for i, obj in enumerate(doc):
            if not isinstance(obj, dict):
                yield Row(f"[{i}]", {}, None, None)
                continue
            props = {k: v for k, v in obj.items() if k not in ("lon", "lat")}
            yield Row(f"[{i}]", props, obj.get("lon"), obj.get("lat"))
        return
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise FileProblem("not a GeoJSON FeatureCollection (nor a JSON array of devices)")
    for i, feat in enumerate(doc["features"]):
        label = f"features[{i}]"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            yield Row(label, {}, _NOT_POINT, "not a GeoJSON Feature")
            continue
        props = feat.get("properties") if isinstance(feat.get("properties"), dict) else {}
        geom = feat.get("geometry")
        if not isinstance(geom, dict) or geom.get("type") != "Point":
            kind = geom.get("type") if isinstance(geom, dict) else geom
            yield Row(label, props, _NOT_POINT, f"geometry must be a Point, got {kind!r}")
            continue
        coords = geom.get("coordinates")
        if not isinstance(coords, list) or len(coords) < 2:
            yield Row(label, props, _NOT_POINT, f"bad Point coordinates {coords!r}")
            continue
        yield Row(label, props, coords[0], coords[1])


_NOT_POINT = object()  # sentinel lon: `lat` then holds the geometry problem


class FileProblem(Exception):
    """The file as a whole cannot be read as devices (not JSON, no header, ...)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_POSITION = frozenset({"lon", "lat", "crs"})


def _position_known(row: Row) -> bool:
    return not any(f in _POSITION for f, _ in row.problems)


def _row_problems(row: Row, layers: Layers) -> list[Problem]:
    p = row.props
    out: list[Problem] = list(row.problems)
    seen = {f for f, _ in row.problems}
    did = p.get("device_id")
    if "device_id" in seen:
        pass
    elif did is None or did == "":
        out.append(("device_id", "device_id missing"))
    elif not isinstance(did, str) or not DEVICE_ID_RE.match(did):
        out.append(("device_id", f"device_id {did!r} does not match {DEVICE_ID_RE.pattern}"))
    kind = p.get("kind")
    if kind not in KINDS and "kind" not in seen:
        out.append(("kind", f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"))
    comm = p.get("community")
    if comm not in COMMUNITIES and "community" not in seen:
        out.append(("community", f"unknown community {comm!r} (expected one of {', '.join(COMMUNITIES)})"))
    iv = p.get("interval_s")
    if "interval_s" in seen:
        pass
    elif iv is None:
        out.append(("interval_s", "interval_s missing"))
    elif not _is_number(iv):
        out.append(("interval_s", f"interval_s must be a number, got {iv!r}"))
    elif iv <= 0:
        out.append(("interval_s", f"interval_s must be positive, got {iv!r}"))
    if not _position_known(row):
        pass
    elif row.lon is _NOT_POINT:
        out.append((None, str(row.lat)))
    elif not (_is_number(row.lon) and _is_number(row.lat)):
        out.append(("lon" if not _is_number(row.lon) else "lat",
                    f"bad lon/lat {row.lon!r}, {row.lat!r}: need finite numbers"))
    elif not (-180 <= row.lon <= 180 and -90 <= row.lat <= 90):
        out.append(("lon" if not -180 <= row.lon <= 180 else "lat",
                    f"bad lon/lat {row.lon!r}, {row.lat!r}: out of range"))
    cid = p.get("compound_id")
    place = layers.places.get(cid) if isinstance(cid, str) else None
    if "compound_id" in seen:
        pass
    elif cid is None or cid == "":
        out.append(("compound_id", "compound_id missing"))
    elif place is None:
        out.append(("compound_id", f"compound_id {cid!r} is not in the GIS layers (compounds, units or shops)"))
    elif comm in COMMUNITIES and place.community != comm:
        out.append(("compound_id", f"compound_id {cid!r} is in community {place.community!r}, not {comm!r}"))
    return out


def validate_rows(source: Path, data: bytes, layers: Layers) -> list[Device]:
    """Every row checked; returns the devices or raises DeviceImportError naming every bad row."""
    # Pause the cyclic GC while ~10^5 acyclic row objects are built (several times faster).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _validate_rows(source, data, layers)
    finally:
        if enabled:
            gc.enable()


def _validate_rows(source: Path, data: bytes, layers: Layers) -> list[Device]:
    try:
        if source.suffix.lower() == ".xls" or data[:4] == b"\xd0\xcf\x11\xe0":  # OLE2: Excel 97-2003
            raise FileProblem("an Excel 97-2003 .xls workbook: save it as .xlsx (另存为 Excel 工作簿) and import that")
        if is_ledger(source, data):
            from geodata.ledger import read_ledger

            rows = read_ledger(data)
        else:
            rows = list(_read_rows(source, data))
    except FileProblem as exc:
        raise DeviceImportError(source, [RowProblem("file", None, str(exc))]) from None
    if not rows:
        raise DeviceImportError(source, [RowProblem("file", None, "no devices in file")])
    problems: dict[int, list[Problem]] = {i: _row_problems(r, layers) for i, r in enumerate(rows)}
    _check_duplicates(rows, problems)
    _check_locations(rows, problems, layers)
    bad = [RowProblem(rows[i].where(what), _did(rows[i]), reason)
           for i in sorted(problems) for what, reason in problems[i]]
    if bad:
        raise DeviceImportError(source, bad)
    return [
        Device(
            device_id=r.props["device_id"],
            kind=r.props["kind"],
            community=r.props["community"],
            compound_id=r.props["compound_id"],
            interval_s=float(r.props["interval_s"]),
            lon=float(r.lon),
            lat=float(r.lat),
            extra={k: v for k, v in r.props.items() if k not in CORE_PROPERTIES},
        )
        for r in rows
    ]


def is_ledger(source: Path, data: bytes) -> bool:
    """An Excel workbook (.xlsx is a zip file): by its name, or by its first bytes."""
    return source.suffix.lower() in (".xlsx", ".xlsm") or data[:4] == b"PK\x03\x04"


def _did(row: Row) -> str | None:
    v = row.props.get("device_id")
    return v if isinstance(v, str) and v else None


def _check_duplicates(rows: list[Row], problems: dict[int, list[Problem]]) -> None:
    seen: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        did = _did(r)
        if did:
            seen.setdefault(did, []).append(i)
    for did, idx in seen.items():
        if len(idx) > 1:
            for i in idx:
                others = ", ".join(rows[j].where("device_id") for j in idx if j != i)
                problems[i].append(("device_id", f"duplicate device_id {did!r} in this file (also at {others})"))


def _check_locations(rows: list[Row], problems: dict[int, list[Problem]], layers: Layers) -> None:
    """Vectorised: distance in metres (METRIC_CRS) from each point to its compound/unit/shop geometry."""
    import shapely

    from geodata.layers import lonlat_to_metric

    idx, lons, lats, geoms = [], [], [], []
    for i, r in enumerate(rows):
        cid = r.props.get("compound_id")
        place = layers.places.get(cid) if isinstance(cid, str) else None
        if place is not None and _position_known(r) and _is_number(r.lon) and _is_number(r.lat) \
                and abs(r.lat) <= 90:
            idx.append(i)
            lons.append(r.lon)
            lats.append(r.lat)
            geoms.append(place.geometry_m)
    if not idx:
        return
    x, y = lonlat_to_metric(np.array(lons), np.array(lats))
    dist = shapely.distance(shapely.points(x, y), np.array(geoms, dtype=object))
    for i, d, lon, lat in zip(idx, dist, lons, lats, strict=True):
        if not (d <= LOCATION_TOLERANCE_M):  # also catches NaN/inf from projection
            place = layers.places[rows[i].props["compound_id"]]
            problems[i].append((
                "lon",
                f"point ({lon}, {lat}) is {d:.0f} m outside {place.layer} {place.place_id} "
                f"({place.name}); tolerance {LOCATION_TOLERANCE_M:.0f} m",
            ))


@contextlib.contextmanager
def registry_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the registry between concurrent imports (advisory flock)."""
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def import_devices(settings: Settings, file: Path, layers: Layers | None = None) -> ImportReport:
    """Validate `file` (GeoJSON FeatureCollection of Points, CSV with lon,lat, a JSON array as printed
    by `devices list --json`, or the street's Excel ledger) against the layers, then add/update by
    device_id into the registry."""
    from geodata.layers import layers_dir, load_layers

    file = Path(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DeviceImportError(file, [RowProblem("file", None, exc.strerror or str(exc))]) from None
    layers = layers or load_layers(layers_dir(settings))
    incoming = validate_rows(file, data, layers)
    target = ensure_registry(settings)
    with registry_lock(target):
        try:
            current = dict(load_registry(target).devices)
        except RegistryError as exc:
            raise DeviceImportError(file, [RowProblem("file", None, f"current registry unreadable: {exc}")]) from None
        report = ImportReport(registry=target, source=file)
        for dev in incoming:
            old = current.get(dev.device_id)
            if old is None:
                report.added.append(dev.device_id)
            elif feature_from_device(old) == feature_from_device(dev):
                report.unchanged.append(dev.device_id)
            else:
                report.updated.append(dev.device_id)
            current[dev.device_id] = dev
        if report.added or report.updated:
            write_registry(target, current)
    return ImportReport(target, file, report.added, report.updated, report.unchanged, len(current))
