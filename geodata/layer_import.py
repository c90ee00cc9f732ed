"""`smartcommunity geodata import`: bring one GIS layer into `<SC_DATA_DIR>/geodata/<layer>.geojson`.

Reads GeoJSON / Shapefile / GeoPackage / DXF (anything pyogrio reads; geodata.survey for CAD drawings and
coordinate systems) or CSV (lon,lat columns, or a `wkt` column), renames fields by --map, reprojects to
EPSG:4326, undoes GCJ-02 / BD-09 offsets, refuses a file without a CRS or one that lands outside the
street, checks geometry types, validity, ids and communities, and writes the whole layer atomically. The written file
then overrides the bundled layer of the same name (see layers.load_layers). Nothing is written when any
feature has a problem.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.contract import COMMUNITIES, DEVICE_ID_RE
from geodata import LAYER_NAMES

if TYPE_CHECKING:
    import geopandas as gpd

    from core.settings import Settings
    from geodata.layers import Layers

GEOM_TYPES: dict[str, tuple[str, ...]] = {
    "communities": ("Polygon", "MultiPolygon"),
    "compounds": ("Polygon", "MultiPolygon"),
    "buildings": ("Polygon", "MultiPolygon"),
    "water": ("Polygon", "MultiPolygon"),
    "units": ("Point",),
    "shops": ("Point",),
    "roads": ("LineString", "MultiLineString"),
    "resources": ("Point",),
}
ID_COLUMN: dict[str, str] = {
    "communities": "community",
    "compounds": "compound_id",
    "buildings": "building_id",
    "units": "unit_id",
    "shops": "shop_id",
    "roads": "road_id",
    "water": "water_id",
    "resources": "resource_id",
}
PLACE_LAYERS = ("compounds", "units", "shops")  # their ids share the registry's compound_id namespace


class LayerImportError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path, metavar="SRC", help="GeoJSON, Shapefile, GeoPackage, DXF or CSV")
    p.add_argument("--layer", required=True, choices=LAYER_NAMES)
    p.add_argument("--map", default="", metavar="FIELD=SOURCE,...", help="e.g. name=名称,households=户数")
    p.add_argument("--crs", help="source CRS when the file has none or a wrong one, e.g. EPSG:4546")
    p.add_argument("--cad-layer", metavar="NAME,...", help="DXF: the CAD layer(s) to take (default all)")
    p.add_argument("--from", dest="from_datum", choices=("gcj02", "bd09"), help="source lon/lat offset")
    p.add_argument("--fix-invalid", action="store_true", help="repair invalid geometry with make_valid")
    p.add_argument("--out", type=Path, help="target data dir (default <SC_DATA_DIR>/geodata)")


def parse_map(text: str) -> list[tuple[str, str]]:
    """'name=名称,households=户数' -> [(source column, target field), ...]; one source may feed several fields."""
    out: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        target, sep, source = part.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise LayerImportError([f"--map: expected FIELD=SOURCE, got {part!r}"])
        out.append((source.strip(), target.strip()))
    return out


def apply_map(frame: gpd.GeoDataFrame, mapping: list[tuple[str, str]]) -> gpd.GeoDataFrame:
    """Copy each source column into its field(s); a source that is no field itself is dropped."""
    cols = {target: frame[source] for source, target in mapping}
    targets = {t for _, t in mapping}
    frame = frame.drop(columns=list({s for s, _ in mapping if s not in targets and s != frame.geometry.name}))
    for target, col in cols.items():
        frame[target] = col.to_numpy()
    return frame


def read_source(
    src: Path,
    crs: str | None,
    *,
    layer: str = "compounds",
    street: tuple[float, float, float, float] | None = None,
    cad_layers: list[str] | None = None,
) -> gpd.GeoDataFrame:
    """The source as a frame with a CRS; a file that states none (and no --crs) is refused."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from geodata import survey

    if src.suffix.lower() == ".csv":
        df = pd.read_csv(src, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        if "wkt" in df.columns:
            geom = shapely.from_wkt(df.pop("wkt").to_numpy(), on_invalid="ignore")
        elif {"lon", "lat"} <= set(df.columns):
            lon = pd.to_numeric(df.pop("lon"), errors="coerce").to_numpy()
            lat = pd.to_numeric(df.pop("lat"), errors="coerce").to_numpy()
            geom = shapely.points(lon, lat)
        else:
            raise LayerImportError(["CSV needs lon,lat columns or a wkt column"])
        return gpd.GeoDataFrame(df.replace({"": None}), geometry=geom, crs=crs or "EPSG:4326")
    try:
        if survey.is_dxf(src):
            frame, problems = survey.read_dxf(src, cad_layers, GEOM_TYPES[layer])
            if problems:
                raise LayerImportError(problems)
        else:
            if cad_layers:
                raise LayerImportError(["--cad-layer is for DXF drawings only"])
            frame = gpd.read_file(src, engine="pyogrio")
    except LayerImportError:
        raise
    except Exception as exc:  # pyogrio raises several types for unreadable data
        raise LayerImportError([f"cannot read ({exc})"]) from None
    if crs:
        return frame.set_crs(crs, allow_override=True)
    if frame.crs is None:
        why = "a DXF drawing has none" if survey.is_dxf(src) else (
            "a Shapefile without its .prj" if src.suffix.lower() == ".shp" else "none in the file")
        fits = survey.suggest_crs(frame, street) if street else None
        raise LayerImportError([
            f"no coordinate system ({why}); state it with --crs, e.g. {fits or survey.CRS_HINT}"
            + (" -- the coordinates land in the street with it" if fits else "")])
    return frame


def _label(layer: str, frame: gpd.GeoDataFrame, i: int) -> str:
    col = ID_COLUMN[layer]
    pid = frame[col].iat[i] if col in frame.columns else None
    return f"feature {i}" + (f" ({col} {pid})" if pid is not None and pid == pid else "")


def prepare_layer(
    frame: gpd.GeoDataFrame, layer: str, current: Layers, *, from_datum: str | None = None, fix_invalid: bool = False
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Reproject, de-offset, check and complete a renamed frame. Returns (frame, warnings) or raises."""
    import numpy as np
    import shapely

    from geodata import survey
    from geodata.chinacrs import geometry_to_wgs84
    from geodata.layers import REQUIRED_COLUMNS

    raw = frame
    frame = frame.to_crs("EPSG:4326").reset_index(drop=True)
    if from_datum:
        frame = frame.set_geometry(geometry_to_wgs84(np.asarray(frame.geometry.values), from_datum))
    street = survey.street_extent(current)
    landed = survey.landing(frame.geometry.values, street)
    if not landed.ok:
        fits = survey.suggest_crs(raw, street)
        raise LayerImportError([f"{landed.describe()}: is the coordinate system right ({raw.crs.to_string()})?"
                                + (f" With {fits} they land in the street." if fits else
                                   f" State the right one with --crs, e.g. {survey.CRS_HINT}.")])
    problems: list[str] = []
    warnings: list[str] = []
    geoms = np.asarray(frame.geometry.values)
    for i, g in enumerate(geoms):
        if g is None or shapely.is_empty(g):
            problems.append(f"{_label(layer, frame, i)}: no geometry")
        elif not np.isfinite(shapely.get_coordinates(g)).all():
            problems.append(f"{_label(layer, frame, i)}: non-finite coordinates")
        elif g.geom_type not in GEOM_TYPES[layer]:
            problems.append(
                f"{_label(layer, frame, i)}: {g.geom_type}, layer {layer} needs {'/'.join(GEOM_TYPES[layer])}"
            )
        elif not shapely.is_valid(g):
            if fix_invalid:
                geoms[i] = _make_valid(g, GEOM_TYPES[layer])
                warnings.append(f"{_label(layer, frame, i)}: invalid geometry repaired ({shapely.is_valid_reason(g)})")
            else:
                problems.append(
                    f"{_label(layer, frame, i)}: invalid geometry: {shapely.is_valid_reason(g)} (use --fix-invalid)"
                )
    frame = frame.set_geometry(geoms, crs="EPSG:4326")
    _complete(frame, layer, current, warnings)
    missing = [c for c in REQUIRED_COLUMNS[layer] if c not in frame.columns]
    if missing:
        problems.append(f"layer {layer} lacks field(s) {', '.join(missing)} (rename with --map FIELD=SOURCE)")
    else:
        problems += _check_ids(frame, layer, current)
    if problems:
        raise LayerImportError(problems)
    return frame, warnings


def _make_valid(g: Any, types: tuple[str, ...]) -> Any:
    import shapely

    fixed = shapely.make_valid(g)
    parts = [p for p in shapely.get_parts(fixed) if p.geom_type in types or "Multi" + p.geom_type in types]
    if not parts:
        return fixed
    if len(parts) == 1:
        return parts[0]
    return shapely.multipolygons(parts) if "Polygon" in types else shapely.multilinestrings(parts)


def _complete(frame: gpd.GeoDataFrame, layer: str, current: Layers, warnings: list[str]) -> None:
    """Fill fields that can be derived: community / compound_id by location, defaults for the rest."""
    from geodata.spatial import SpatialIndex

    idx = SpatialIndex(current)
    reps = frame.geometry.representative_point()
    lon, lat = reps.x.to_numpy(), reps.y.to_numpy()
    if layer in ("compounds", "units", "shops", "resources") and "community" not in frame.columns:
        frame["community"] = idx.assign(lon, lat, "communities")
        warnings.append("community filled in from the communities layer by location")
    if layer in ("units", "buildings") and "compound_id" not in frame.columns:
        frame["compound_id"] = idx.assign(lon, lat, "compounds")
        warnings.append("compound_id filled in from the compounds layer by location")
    if layer == "compounds":
        frame["kind"] = "compound"
        if "buildings" not in frame.columns:
            frame["buildings"] = 0
            warnings.append("buildings not given: set to 0")
        if "households" not in frame.columns:
            frame["households"] = 0
            warnings.append("households not given: set to 0")
    if layer in ("units", "shops"):
        for col in ("contact", "phone"):
            if col not in frame.columns:
                frame[col] = None
    if layer == "resources":
        for col in ("closes", "serves"):  # only valves close and only teams serve: row_problems says which
            if col not in frame.columns:
                frame[col] = None
    if layer == "buildings" and "floors" not in frame.columns:
        frame["floors"] = None
    if layer in ("roads", "water") and ID_COLUMN[layer] not in frame.columns:
        prefix = "R" if layer == "roads" else "WB"
        frame[ID_COLUMN[layer]] = [f"{prefix}-{i + 1:04d}" for i in range(len(frame))]
    for col in ("households", "buildings"):
        if layer == "compounds" and col in frame.columns:
            import pandas as pd

            frame[col] = pd.to_numeric(frame[col], errors="coerce").fillna(0).astype(int)


def _check_ids(frame: gpd.GeoDataFrame, layer: str, current: Layers) -> list[str]:
    problems: list[str] = []
    col = ID_COLUMN[layer]
    seen: dict[str, int] = {}
    for i, pid in enumerate(frame[col]):
        label = _label(layer, frame, i)
        if pid is None or pid != pid or str(pid) == "":
            problems.append(f"{label}: {col} missing")
            continue
        pid = str(pid)
        if layer != "communities" and not DEVICE_ID_RE.match(pid):
            problems.append(f"{label}: {col} {pid!r} does not match {DEVICE_ID_RE.pattern}")
        if pid in seen:
            problems.append(f"{label}: duplicate {col} {pid!r} (also feature {seen[pid]})")
        seen.setdefault(pid, i)
    if layer == "communities":
        problems += [f"community {c!r} is not one of the contract's {sorted(COMMUNITIES)}" for c in seen
                     if c not in COMMUNITIES]  # fmt: skip
    if "community" in frame.columns and layer in ("compounds", "units", "shops", "resources"):
        for i, c in enumerate(frame["community"]):
            if c not in COMMUNITIES:
                problems.append(f"{_label(layer, frame, i)}: unknown community {c!r}")
    if layer == "resources":
        from geodata.resources import row_problems

        closable = set(current.closable)
        rows = zip(frame["category"], frame["closes"], frame["serves"], strict=True)
        for i, (cat, closes, serves) in enumerate(rows):
            problems += [f"{_label(layer, frame, i)}: {p}" for p in row_problems(cat, closes, serves, closable)]
    if layer in PLACE_LAYERS:
        others = {
            str(v): other for other in PLACE_LAYERS if other != layer for v in current.layer(other)[ID_COLUMN[other]]
        }
        problems += [f"{col} {pid!r} is already used in layer {others[pid]}" for pid in seen if pid in others]
    return problems


def write_layer(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write GeoJSON (RFC 7946: EPSG:4326, CCW rings) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".geojson", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # the driver refuses to overwrite; we only wanted a unique name
    try:
        frame.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer=path.stem, layer_options={"RFC7946": "YES"})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from geodata.layers import layers_dir, load_layers
    from geodata.survey import street_extent

    out_dir: Path = args.out or layers_dir(settings)
    try:
        mapping = parse_map(args.map)
        current = load_layers(out_dir)
        cad_layers = [n.strip() for n in (args.cad_layer or "").split(",") if n.strip()] or None
        frame = read_source(args.src, args.crs, layer=args.layer, street=street_extent(current),
                            cad_layers=cad_layers)
        unknown = sorted({s for s, _ in mapping if s not in frame.columns})
        if unknown:
            have = ", ".join(c for c in frame.columns if c != frame.geometry.name)
            raise LayerImportError([f"--map: no column {', '.join(unknown)} in {args.src} (has: {have})"])
        frame = apply_map(frame, mapping)
        frame, warnings = prepare_layer(
            frame, args.layer, current, from_datum=args.from_datum, fix_invalid=args.fix_invalid
        )
    except LayerImportError as exc:
        for p in exc.problems:
            print(f"{args.src}: {p}", file=sys.stderr)
        print(f"{args.src}: {len(exc.problems)} problem(s); layer {args.layer} not written", file=sys.stderr)
        return 2
    target = out_dir / f"{args.layer}.geojson"
    write_layer(frame, target)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    _warn_orphans(settings, load_layers(out_dir))
    _warn_closed_orphans(load_layers(out_dir))
    print(f"imported {len(frame)} {args.layer} features into {target}")
    return 0


def _warn_closed_orphans(layers: Layers) -> None:
    """Valves that close compounds / buildings no longer in the layers would name a place nobody can find."""
    from geodata.resources import split_ids

    have = layers.closable
    res = layers.resources
    orphans = [f"{rid} ({c})" for rid, closes in zip(res["resource_id"], res["closes"], strict=True)
               for c in split_ids(closes) if c not in have]  # fmt: skip
    if orphans:
        shown = ", ".join(orphans[:10]) + (" ..." if len(orphans) > 10 else "")
        print(f"warning: valves close places no longer in the layers: {shown}", file=sys.stderr)


def _warn_orphans(settings: Settings, layers: Layers) -> None:
    """Registry devices whose compound_id vanished with the new layer would fail the next import."""
    from core.registry import RegistryError, load_registry

    if not settings.registry_path.exists():
        return
    try:
        reg = load_registry(settings.registry_path)
    except RegistryError:
        return
    orphans = sorted({d.compound_id for d in reg.values() if d.compound_id not in layers.places})
    if orphans:
        shown = ", ".join(orphans[:10]) + (" ..." if len(orphans) > 10 else "")
        print(f"warning: registry devices refer to places no longer in the layers: {shown}", file=sys.stderr)
