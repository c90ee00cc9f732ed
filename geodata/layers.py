"""Loading the GIS layers.

Rule (documented in geodata/README.md): for each layer, `<data_dir>/<layer>.geojson` is used when it
exists, else the bundled `geodata/data/<layer>.geojson`. `data_dir` defaults to `<SC_DATA_DIR>/geodata`,
which is where `smartcommunity geodata import` writes. Results are cached per set of (file, mtime).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyproj
import shapely

from geodata import BUNDLED_DIR, LAYER_NAMES, METRIC_CRS

if TYPE_CHECKING:
    import geopandas as gpd

    from core.settings import Settings

PlaceLayer = Literal["compound", "unit", "shop"]

# Columns each layer must carry (beyond geometry); load fails loudly when one is missing.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "communities": ("community", "name"),
    "compounds": ("compound_id", "name", "community", "households", "buildings", "kind"),
    "buildings": ("building_id", "compound_id", "name", "floors"),
    "units": ("unit_id", "name", "category", "community", "compound_id", "contact", "phone"),
    "shops": ("shop_id", "name", "category", "community", "contact", "phone"),
    "roads": ("road_id", "name"),
    "water": ("water_id", "name"),
    "resources": ("resource_id", "category", "name", "community", "closes", "serves"),  # geodata/resources.py
}


@functools.cache
def _to_metric() -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)


def to_metric(geoms: np.ndarray | shapely.Geometry) -> np.ndarray | shapely.Geometry:
    """Project lon/lat shapely geometries (scalar or array) to the metric CRS (metres)."""
    tr = _to_metric()
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def lonlat_to_metric(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _to_metric().transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return np.asarray(x), np.asarray(y)


@dataclass(frozen=True, slots=True)
class Place:
    """A valid `compound_id` target of the registry: a compound, a unit or a shop."""

    place_id: str
    layer: PlaceLayer
    community: str
    name: str
    geometry: shapely.Geometry  # EPSG:4326
    geometry_m: shapely.Geometry  # METRIC_CRS, metres


@dataclass(frozen=True, eq=False)  # identity equality/hash: usable as a cache key
class Layers:
    communities: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    units: gpd.GeoDataFrame
    shops: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    water: gpd.GeoDataFrame
    # Valves, hydrants, teams, shelters, AEDs (geodata/resources.py); empty when a caller builds
    # Layers without them.
    resources: gpd.GeoDataFrame = field(default_factory=lambda: _empty_frame("resources"))
    sources: dict[str, Path] = field(default_factory=dict)

    def layer(self, name: str) -> gpd.GeoDataFrame:
        if name not in LAYER_NAMES:
            raise KeyError(name)
        frame: gpd.GeoDataFrame = getattr(self, name)
        return frame

    @cached_property
    def places(self) -> dict[str, Place]:
        """compound / unit / shop id -> Place; they share one id namespace (contract §2 compound_id)."""
        out: dict[str, Place] = {}
        for layer, frame, id_col in (
            ("compound", self.compounds, "compound_id"),
            ("unit", self.units, "unit_id"),
            ("shop", self.shops, "shop_id"),
        ):
            geoms = np.asarray(frame.geometry.values)
            metric = to_metric(geoms)
            for pid, comm, name, g, gm in zip(
                frame[id_col], frame["community"], frame["name"], geoms, metric, strict=True
            ):
                # First definition wins; duplicates are reported by validate_layers(), not hidden here.
                out.setdefault(str(pid), Place(str(pid), layer, str(comm), str(name), g, gm))  # type: ignore[arg-type]
        return out

    @cached_property
    def closable(self) -> dict[str, str]:
        """What a valve may close: compound id -> 半山尚小区, building id -> 半山尚小区 3栋."""
        cp, b = self.compounds, self.buildings
        names = dict(zip(cp["compound_id"].astype(str), cp["name"].astype(str), strict=True))
        return names | {str(bid): f"{names.get(str(cid), str(cid))} {n}"
                        for bid, cid, n in zip(b["building_id"], b["compound_id"], b["name"], strict=True)}


def _empty_frame(name: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    return gpd.GeoDataFrame({c: [] for c in REQUIRED_COLUMNS[name]}, geometry=[], crs="EPSG:4326")


def places_index(layers: Layers | None = None) -> dict[str, Place]:
    """All valid compound_id targets (compounds + units + shops) of the effective layers."""
    return (layers or load_layers()).places


def layers_dir(settings: Settings | None = None) -> Path:
    """The data dir whose layer files override the bundled ones: `<SC_DATA_DIR>/geodata`."""
    if settings is None:
        from core.settings import load_settings

        settings = load_settings()
    return settings.data_path / "geodata"


def layer_sources(data_dir: Path | None = None) -> dict[str, Path]:
    """Which file each layer is read from, applying the override rule."""
    override = data_dir if data_dir is not None else layers_dir()
    out: dict[str, Path] = {}
    for name in LAYER_NAMES:
        candidate = override / f"{name}.geojson"
        out[name] = candidate if candidate.is_file() else BUNDLED_DIR / f"{name}.geojson"
    return out


def load_layers(data_dir: Path | None = None) -> Layers:
    """The effective layers (override dir first, then bundled). Cached until a source file changes."""
    sources = layer_sources(data_dir)
    key = tuple((name, str(p), p.stat().st_mtime_ns) for name, p in sources.items())
    return _load_cached(key)


def load_bundled_layers() -> Layers:
    """Only the bundled sample layers, ignoring any override (tests, build scripts)."""
    return load_layers(BUNDLED_DIR)


@functools.lru_cache(maxsize=4)
def _load_cached(key: tuple[tuple[str, str, int], ...]) -> Layers:
    import geopandas as gpd

    frames: dict[str, gpd.GeoDataFrame] = {}
    for name, path, _mtime in key:
        frame = gpd.read_file(path, engine="pyogrio")
        if frame.crs is None:
            frame = frame.set_crs("EPSG:4326")
        elif frame.crs.to_epsg() != 4326:
            frame = frame.to_crs("EPSG:4326")
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: layer {name!r} lacks column(s) {', '.join(missing)}")
        if name == "resources":  # every query takes a resource as a point: say which row is not one
            bad = [f"{rid} ({g.geom_type if g is not None else 'no geometry'})"
                   for rid, g in zip(frame["resource_id"], frame.geometry, strict=True)
                   if g is None or g.geom_type != "Point" or g.is_empty]
            if bad:
                raise ValueError(f"{path}: layer 'resources' needs Point geometry: {', '.join(bad[:10])}")
        frames[name] = frame
    return Layers(**frames, sources={name: Path(path) for name, path, _ in key})
