"""The map's data: GIS layers as GeoJSON dicts for MapLibre, and the live device registry.

Layers are read once per change of their files (geodata caches by mtime); the registry is watched
so that `devices import` shows on the map within a few seconds, without a restart.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from core.contract import COMMUNITIES

if TYPE_CHECKING:
    from core.registry import Registry, RegistryWatcher
    from core.settings import Settings
    from geodata.layers import Layers

log = logging.getLogger(__name__)

# Sub-district extent used until the layers load (around 110.79 E, 32.65 N).
DEFAULT_BOUNDS = (110.780, 32.640, 110.800, 32.660)
LAYERS_CHECK_S = 2.0


@dataclass(frozen=True)
class Place:
    """What the dashboard needs of a compound, unit or shop: a name and a point for its label/halo."""

    name: str
    community: str
    lon: float
    lat: float
    compound_id: str = ""  # the compound it lies in (itself for a compound), "" when none


@dataclass(frozen=True)
class BaseLayers:
    """Plain-dict GeoJSON of every static layer, plus lookups; empty when geodata cannot load."""

    communities: dict[str, Any]
    compounds: dict[str, Any]
    buildings: dict[str, Any]
    roads: dict[str, Any]
    water: dict[str, Any]
    community_centres: dict[str, tuple[float, float]]
    compound_ids: list[str]
    compound_info: list[tuple[str, str, int]]  # (name, community name, households) per compound_id
    units: list[dict[str, Any]]  # {"name","category","lon","lat"}
    shops: list[dict[str, Any]]
    places: dict[str, Place]
    bounds: tuple[float, float, float, float]
    key: str = ""
    errors: list[str] = field(default_factory=list)
    # {"id","name","category","label","detail","lon","lat","community"} per valve, hydrant, team, shelter, AED
    resources: list[dict[str, Any]] = field(default_factory=list)


def _fc(frame: Any) -> dict[str, Any]:
    """GeoDataFrame -> GeoJSON dict with only JSON-safe properties (NaN -> None)."""
    doc: dict[str, Any] = orjson.loads(frame.to_json(drop_id=True, na="null"))
    return doc


def empty_layers(error: str) -> BaseLayers:
    empty = {"type": "FeatureCollection", "features": []}
    return BaseLayers(empty, empty, empty, empty, empty, {}, [], [], [], [], {}, DEFAULT_BOUNDS, "empty", [error])


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _points(frame: Any, id_col: str) -> list[dict[str, Any]]:
    """Units / shops: id, name, category, compound, contact and phone when the layer has them."""
    cols = [c for c in ("compound_id", "contact", "phone", "community") if c in frame.columns]
    out = []
    for i, (pid, n, c, g) in enumerate(zip(frame[id_col], frame["name"], frame["category"], frame.geometry,
                                           strict=True)):
        row = {"id": str(pid), "name": str(n), "category": str(c), "lon": float(g.x), "lat": float(g.y)}
        for col in cols:
            row[col] = _text(frame[col].iloc[i])
        out.append(row)
    return out


def _resources(layers: Layers) -> list[dict[str, Any]]:
    """The resources layer for the map: label (燃气阀门, 燃气抢修队, …) and one line of detail each."""
    from geodata.resources import category_label, split_ids

    res = layers.resources
    if not len(res):
        return []
    names = layers.closable
    out = []
    for i, (rid, name, cat, closes, serves, g) in enumerate(zip(
            res["resource_id"], res["name"], res["category"], res["closes"], res["serves"], res.geometry,
            strict=True)):  # fmt: skip
        detail = []
        if split_ids(closes):
            detail.append("关闭 " + "、".join(names.get(c, c) for c in split_ids(closes)))
        cap = res["capacity"].iloc[i] if "capacity" in res.columns else None
        if isinstance(cap, int | float) and cap == cap:
            detail.append(f"可容纳 {int(cap)} 人")
        phone = _text(res["phone"].iloc[i]) if "phone" in res.columns else ""
        if phone:
            detail.append(f"电话 {phone}")
        community = _text(res["community"].iloc[i]) if "community" in res.columns else ""
        out.append({"id": str(rid), "name": str(name), "category": str(cat),
                    "label": category_label(str(cat), serves), "detail": " · ".join(detail),
                    "lon": float(g.x), "lat": float(g.y), "community": community})
    return out


def build_layers(layers: Layers) -> BaseLayers:
    comm = layers.communities
    centres: dict[str, tuple[float, float]] = {}
    for slug, geom in zip(comm["community"], comm.geometry, strict=True):
        p = geom.representative_point()
        centres[str(slug)] = (float(p.x), float(p.y))
    places: dict[str, Place] = {}
    comp = layers.compounds
    info: list[tuple[str, str, int]] = []
    for cid, name, c, hh, g in zip(
        comp["compound_id"], comp["name"], comp["community"], comp["households"], comp.geometry, strict=True
    ):
        p = g.representative_point()
        places[str(cid)] = Place(str(name), str(c), float(p.x), float(p.y), str(cid))
        households = 0 if hh is None or (isinstance(hh, float) and math.isnan(hh)) else int(hh)
        info.append((str(name), COMMUNITIES.get(str(c), str(c)), households))
    for frame, id_col in ((layers.units, "unit_id"), (layers.shops, "shop_id")):
        inside = frame["compound_id"] if "compound_id" in frame.columns else [None] * len(frame)
        for pid, name, c, g, cid in zip(
            frame[id_col], frame["name"], frame["community"], frame.geometry, inside, strict=True
        ):
            host = str(cid) if isinstance(cid, str) and cid else ""
            places.setdefault(str(pid), Place(str(name), str(c), float(g.x), float(g.y), host))
    minx, miny, maxx, maxy = (float(v) for v in comm.total_bounds)
    compounds = _fc(comp[["compound_id", "name", "community", "geometry"]])
    for f in compounds["features"]:
        f["id"] = f["properties"]["compound_id"]  # Choroplethmap matches locations on feature id
    key = ",".join(f"{n}:{p.stat().st_mtime_ns}" for n, p in sorted(layers.sources.items()))
    return BaseLayers(
        communities=_fc(comm[["community", "name", "geometry"]]),
        compounds=compounds,
        buildings=_fc(layers.buildings[["building_id", "geometry"]]),
        roads=_fc(layers.roads[["road_id", "name", "geometry"]]),
        water=_fc(layers.water[["water_id", "name", "geometry"]]),
        community_centres=centres,
        compound_ids=[str(c) for c in comp["compound_id"]],
        compound_info=info,
        units=_points(layers.units, "unit_id"),
        shops=_points(layers.shops, "shop_id"),
        places=places,
        bounds=(minx, miny, maxx, maxy),
        key=key,
        resources=_resources(layers),
    )


class MapData:
    """Static layers (reloaded when their files change) and the current device registry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._layers: BaseLayers | None = None
        self._layers_key: tuple[tuple[str, int], ...] | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._watcher: RegistryWatcher | None = None

    def layers(self) -> BaseLayers:
        """The layers, re-checking their files at most every LAYERS_CHECK_S (a refresh must stay cheap)."""
        now = time.monotonic()
        if self._layers is not None and now < self._next_check:
            return self._layers
        with self._lock:
            return self._load_layers(now)

    def _load_layers(self, now: float) -> BaseLayers:
        if self._layers is not None and now < self._next_check:
            return self._layers
        self._next_check = now + LAYERS_CHECK_S
        try:
            from geodata.layers import layer_sources, layers_dir, load_layers

            d = layers_dir(self.settings)
            key = tuple((str(p), p.stat().st_mtime_ns) for p in layer_sources(d).values())
            if self._layers is None or key != self._layers_key:
                self._layers = build_layers(load_layers(d))
                self._layers_key = key
        except Exception as exc:  # the console must keep working without a map
            log.exception("GIS layers not loaded; the map shows devices and alerts only")
            if self._layers is None:
                self._layers = empty_layers(f"GIS layers not loaded: {exc}")
        return self._layers

    def registry(self) -> Registry | dict[str, Any]:
        try:
            if self._watcher is None:
                from core.registry import RegistryWatcher, ensure_registry

                with self._lock:  # the live-state thread and a request may both ask first: seed once
                    if self._watcher is None:
                        self._watcher = RegistryWatcher(ensure_registry(self.settings), self.settings.registry_poll_s)
            return self._watcher.current()
        except Exception:
            log.exception("device registry not loaded")
            return {}

    def registry_version(self) -> str:
        reg = self.registry()
        return str(getattr(reg, "version", "none"))
