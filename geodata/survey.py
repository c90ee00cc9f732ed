"""The survey office's files: CAD drawings (DXF), the coordinate system a file is in, whether it lands in the street.

Surveyed data in China comes in CGCS2000: lon/lat (EPSG:4490) or a Gauss–Krüger grid. For Shiyan (~110.8 E)
that is the 3° zone with central meridian 111 E, EPSG:4546 (easting without the zone number) or EPSG:4525
(easting prefixed with zone 37); the 6° zone 19 has the same central meridian (EPSG:4508 / EPSG:4497).
CGCS2000 and WGS84 agree to well under a metre here (pyproj treats the datum shift as null), so
reprojecting to EPSG:4326 is all the map needs.

A DXF has no coordinate system at all, and a Shapefile without its .prj has none either: such a file is
refused until --crs states one, and a file whose coordinates land away from the street once reprojected
(the wrong zone, a prefixed easting read as unprefixed, x and y swapped) is refused saying where they landed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geodata import METRIC_CRS

if TYPE_CHECKING:
    import geopandas as gpd

    from geodata.layers import Layers

# How far (metres) outside the street's communities an imported layer may still reach: room for a survey
# that covers the roads and water around the street, far short of any wrong-zone error (hundreds of km).
STREET_MARGIN_M = 3000.0

# What the survey office's files for Shiyan are likely to be in, tried in this order to suggest a --crs.
LIKELY_CRS: tuple[tuple[str, str], ...] = (
    (METRIC_CRS, "CGCS2000 3° Gauss–Krüger CM 111E, easting without zone number"),
    ("EPSG:4525", "CGCS2000 3° Gauss–Krüger zone 37, easting with zone number"),
    ("EPSG:4497", "CGCS2000 6° Gauss–Krüger zone 19, easting with zone number"),
    ("EPSG:4490", "CGCS2000 lon/lat"),
)
CRS_HINT = f"--crs {METRIC_CRS} ({LIKELY_CRS[0][1]})"

# DXF columns that only describe the drawing; the CAD layer and entity handle are kept to trace a feature back.
_DXF_KEEP = {"Layer": "cad_layer", "EntityHandle": "cad_handle", "Text": "Text"}


@dataclass(frozen=True)
class Landing:
    """Where a layer's coordinates fell, in lon/lat, against the street's extent."""

    bounds: tuple[float, float, float, float]
    street: tuple[float, float, float, float]
    outside: int
    total: int

    @property
    def ok(self) -> bool:
        return self.outside == 0

    def describe(self) -> str:
        import math

        import pyproj

        head = f"{self.outside} of {self.total} features land outside the street ({_fmt_box(self.street)})"
        x0, y0, x1, y1 = self.bounds
        if not all(math.isfinite(v) for v in self.bounds):
            return f"{head}: the coordinates cannot be placed on the Earth at all in this coordinate system"
        if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            return f"{head}: x {x0:.1f}..{x1:.1f}, y {y0:.1f}..{y1:.1f} are no lon/lat"
        s0, t0, s1, t1 = self.street
        az, _, dist = pyproj.Geod(ellps="WGS84").inv((s0 + s1) / 2, (t0 + t1) / 2, (x0 + x1) / 2, (y0 + y1) / 2)
        far = f", ~{dist / 1000:,.0f} km {_compass(az)} of the street" if dist > 1000 else ""
        return f"{head}: they land at {_fmt_box(self.bounds)}{far}"


def _fmt_box(b: tuple[float, float, float, float]) -> str:
    x0, y0, x1, y1 = b
    return f"lon {x0:.4f}..{x1:.4f}, lat {y0:.4f}..{y1:.4f}"


def _compass(azimuth: float) -> str:
    return ("N", "NE", "E", "SE", "S", "SW", "W", "NW")[round((azimuth % 360) / 45) % 8]


def street_extent(current: Layers) -> tuple[float, float, float, float]:
    """The communities' lon/lat box, widened by STREET_MARGIN_M."""
    import pyproj

    x0, y0, x1, y1 = (float(v) for v in current.communities.total_bounds)
    geod = pyproj.Geod(ellps="WGS84")
    w, s, _ = geod.fwd(x0, y0, 225, STREET_MARGIN_M * 2**0.5)
    e, n, _ = geod.fwd(x1, y1, 45, STREET_MARGIN_M * 2**0.5)
    return (w, s, e, n)


def landing(geoms: object, street: tuple[float, float, float, float]) -> Landing:
    """How many lon/lat geometries reach outside `street`; empty / missing geometry is not counted here."""
    import numpy as np
    import shapely

    arr = np.asarray(geoms, dtype=object)
    present = arr[~(shapely.is_missing(arr) | shapely.is_empty(arr))]
    if not len(present):
        return Landing((0.0, 0.0, 0.0, 0.0), street, 0, 0)
    box = shapely.box(*street)
    bounds = shapely.bounds(present)
    outside = int((~shapely.covers(box, present)).sum()) if np.isfinite(bounds).all() else len(present)
    fin = bounds[np.isfinite(bounds).all(axis=1)]
    total = (float(fin[:, 0].min()), float(fin[:, 1].min()), float(fin[:, 2].max()), float(fin[:, 3].max())) \
        if len(fin) else (float("nan"),) * 4
    return Landing(total, street, outside, len(present))  # type: ignore[arg-type]


def suggest_crs(frame: gpd.GeoDataFrame, street: tuple[float, float, float, float]) -> str | None:
    """The first of LIKELY_CRS under which the frame's raw coordinates all land in the street, as an option."""
    import warnings

    for code, what in LIKELY_CRS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                moved = frame.set_crs(code, allow_override=True).to_crs("EPSG:4326")
        except Exception:  # pyproj refuses coordinates far outside a projection's domain
            continue
        got = landing(moved.geometry.values, street)
        if got.total and got.ok:
            return f"--crs {code} ({what})"
    return None


def is_dxf(src: Path) -> bool:
    return src.suffix.lower() == ".dxf"


def read_dxf(
    src: Path, cad_layers: list[str] | None, geom_types: tuple[str, ...]
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Entities of a CAD drawing as features, and the problems that stop its import (none: an empty list).

    GDAL's DXF driver (bundled in pyogrio's wheels) flattens the drawing into one table of entities with
    their CAD layer and text. Only the chosen CAD layers are kept. Closed polylines become polygons when the
    target layer holds polygons, and a TEXT / MTEXT label lying inside a polygon becomes that polygon's
    `Text` (so `--map compound_id=Text` takes the ids written on the drawing). For a line layer the labels
    are dropped; for a point layer they are features like any point.
    """
    import geopandas as gpd
    import numpy as np
    import shapely

    want_polygons, want_points = "Polygon" in geom_types, "Point" in geom_types
    frame = gpd.read_file(src, engine="pyogrio")
    problems: list[str] = []
    have = sorted({str(v) for v in frame["Layer"].dropna()}) if "Layer" in frame.columns else []
    if cad_layers:
        unknown = [n for n in cad_layers if n not in have]
        if unknown:
            return frame, [f"--cad-layer: no CAD layer {', '.join(unknown)} in {src} (has: {', '.join(have)})"]
        frame = frame[frame["Layer"].isin(cad_layers)]
    frame = frame[[c for c in _DXF_KEEP if c in frame.columns] + [frame.geometry.name]].rename(columns=_DXF_KEEP)
    geoms = shapely.force_2d(np.asarray(frame.geometry.values))
    text = frame["Text"].to_numpy(dtype=object) if "Text" in frame.columns else np.full(len(frame), None)
    is_label = np.array([g is not None and g.geom_type == "Point" and bool(t) for g, t in zip(geoms, text,
                                                                                            strict=True)])
    if want_polygons:
        closed = np.array([g is not None and g.geom_type == "LineString" and bool(shapely.is_closed(g))
                           and len(g.coords) >= 4 for g in geoms])  # fmt: skip
        for i in np.flatnonzero(closed):
            geoms[i] = shapely.Polygon(geoms[i].coords)
        shapes = gpd.GeoDataFrame(frame[~is_label].drop(columns=["Text"], errors="ignore").reset_index(drop=True),
                                  geometry=list(geoms[~is_label]))
        labels = gpd.GeoDataFrame({"Text": text[is_label]}, geometry=list(geoms[is_label]))
        shapes["Text"] = _labels_inside(shapes, labels)
        return shapes, problems
    if not want_points:  # a line layer: the labels along it are annotation, not features
        keep = ~is_label
        return gpd.GeoDataFrame(frame[keep].reset_index(drop=True), geometry=list(geoms[keep])), problems
    return gpd.GeoDataFrame(frame.reset_index(drop=True), geometry=list(geoms)), problems


def _labels_inside(shapes: gpd.GeoDataFrame, labels: gpd.GeoDataFrame) -> list[str | None]:
    """For each shape, the text of the label inside it nearest its centroid (None if no label is inside)."""
    import shapely

    out: list[str | None] = []
    pts = labels.geometry.values
    for g in shapes.geometry.values:
        if g is None or g.geom_type not in ("Polygon", "MultiPolygon") or not len(pts):
            out.append(None)
            continue
        inside = [i for i, p in enumerate(pts) if shapely.contains(g, p)]
        if not inside:
            out.append(None)
            continue
        c = g.centroid
        best = min(inside, key=lambda i: c.distance(pts[i]))
        out.append(str(labels["Text"].iat[best]))
    return out
