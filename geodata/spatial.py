"""Spatial questions, answered in one place: point-in-place, radius search, line crossings, risk roll-up.

Point-in-polygon runs on lon/lat (topology does not care about the projection); anything in metres
is computed in METRIC_CRS (EPSG:4546, CGCS2000 3-degree Gauss-Kruger CM 111E).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from core.severity import rollup
from geodata.layers import Layers, lonlat_to_metric, to_metric
from geodata.resources import NEED_BY_KEY, NEEDS, split_ids

ContainerLayer = Literal["communities", "compounds", "buildings"]
_ID_COL: dict[str, str] = {"communities": "community", "compounds": "compound_id", "buildings": "building_id"}


@dataclass(frozen=True, slots=True)
class Location:
    community: str | None
    compound_id: str | None
    building_id: str | None


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    name: str
    category: str
    distance_m: float


@dataclass(frozen=True, slots=True)
class Nearby:
    units: list[Hit]
    shops: list[Hit]
    compounds: list[Hit]  # compounds whose polygon comes within the radius (distance 0 = inside)
    households: int  # households of those compounds
    households_in_radius: float  # estimate: each compound's households x share of its area in the circle


@dataclass(frozen=True, slots=True)
class ResourceHit:
    """The nearest resource answering one Need (geodata.resources.NEEDS) around a point."""

    need: str  # Need.key, e.g. gas_valve, gas_team
    id: str
    name: str
    category: str
    label: str  # 燃气阀门, 燃气抢修队, …
    distance_m: float
    lon: float
    lat: float
    closes: tuple[str, ...] = ()  # valves: the compound / building ids it shuts off
    closes_names: tuple[str, ...] = ()  # 半山尚小区, 半山尚小区 3栋
    closes_here: bool = False  # a valve that closes the place the point is in (preferred over a nearer one)
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class _NeedIndex:
    rows: np.ndarray  # row numbers in the resources layer
    tree: shapely.STRtree  # over their metric points
    by_place: dict[str, np.ndarray]  # closed compound / building id -> positions in `rows`


class SpatialIndex:
    """STRtrees and projected coordinates built once per Layers; every query reuses them."""

    def __init__(self, layers: Layers) -> None:
        self.layers = layers
        self._geoms = {name: np.asarray(layers.layer(name).geometry.values) for name in _ID_COL}
        self._ids = {name: np.asarray(layers.layer(name)[col].astype(str)) for name, col in _ID_COL.items()}
        self._trees = {name: shapely.STRtree(g) for name, g in self._geoms.items()}
        cp = layers.compounds
        self._cp_metric = to_metric(self._geoms["compounds"])
        self._cp_tree_m = shapely.STRtree(self._cp_metric)
        self._cp_households = np.asarray(cp["households"].fillna(0), dtype=float)
        self._cp_area = shapely.area(self._cp_metric)
        self._points: dict[str, tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]]] = {}
        for name, id_col in (("units", "unit_id"), ("shops", "shop_id")):
            frame = layers.layer(name)
            x, y = lonlat_to_metric(frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy())
            self._points[name] = (x, y, list(frame[id_col]), list(frame["name"]), list(frame["category"]))
        self._build_resources()

    # --- the resources layer: one STRtree per Need, built here once -------------------------------
    def _build_resources(self) -> None:
        res = self.layers.resources
        self._res_m = to_metric(np.asarray(res.geometry.values)) if len(res) else np.array([], dtype=object)
        self._res_closes = [tuple(split_ids(v)) for v in res["closes"]]
        phones = list(res["phone"]) if "phone" in res.columns else [None] * len(res)
        # Plain tuples: a query reads a few rows, and pandas' per-cell access would cost more than the search.
        self._res_rows = [(str(i), str(n), str(c), float(g.x), float(g.y), p if isinstance(p, str) and p else None)
                          for i, n, c, g, p in zip(res["resource_id"], res["name"], res["category"], res.geometry,
                                                   phones, strict=True)]  # fmt: skip
        serves = [set(split_ids(v)) for v in res["serves"]]
        cats = np.asarray(res["category"].astype(str)) if len(res) else np.array([], dtype=str)
        self._closed_name = self.layers.closable
        self._needs: dict[str, _NeedIndex] = {}
        for need in NEEDS:
            rows = np.flatnonzero((cats == need.category) & np.array(
                [need.serves is None or need.serves in s for s in serves], dtype=bool))
            if not len(rows):
                continue
            by_place: dict[str, list[int]] = {}
            for pos, r in enumerate(rows):
                for pid in self._res_closes[r]:
                    by_place.setdefault(pid, []).append(pos)
            self._needs[need.key] = _NeedIndex(rows, shapely.STRtree(self._res_m[rows]),
                                               {k: np.array(v) for k, v in by_place.items()})

    def nearest_resources(self, lon: float, lat: float, within: Sequence[str | None] = ()) -> dict[str, ResourceHit]:
        """The nearest resource of each Need to (lon, lat), in metres; Needs the layer cannot answer are absent.

        `within`: ids of the building / compound the point is in, most specific first. A valve that
        closes one of them wins over a nearer valve of a neighbour (closing that would not stop this leak).
        """
        px, py = lonlat_to_metric(np.array([lon]), np.array([lat]))
        centre = shapely.points(px[0], py[0])
        out: dict[str, ResourceHit] = {}
        for key, ni in self._needs.items():
            pos, here = -1, False
            for pid in within:
                cand = ni.by_place.get(pid or "")
                if cand is not None:
                    d = shapely.distance(self._res_m[ni.rows[cand]], centre)
                    pos, here = int(cand[int(np.argmin(d))]), True
                    break
            if pos < 0:
                pos = int(ni.tree.query_nearest(centre, all_matches=False)[0])
            r = int(ni.rows[pos])
            rid, name, cat, lon_r, lat_r, phone = self._res_rows[r]
            closes = self._res_closes[r]
            out[key] = ResourceHit(
                need=key, id=rid, name=name, category=cat, label=NEED_BY_KEY[key].label,
                distance_m=float(shapely.distance(self._res_m[r], centre)), lon=lon_r, lat=lat_r,
                closes=closes, closes_names=tuple(self._closed_name.get(c, c) for c in closes), closes_here=here,
                phone=phone,
            )
        return out

    # --- which place contains a point ------------------------------------------------------------
    def assign(self, lons: Sequence[float] | np.ndarray, lats: Sequence[float] | np.ndarray,
               layer: ContainerLayer = "compounds") -> np.ndarray:  # fmt: skip
        """Vectorised: the id of the `layer` polygon containing each point, None where there is none.

        A point on a shared edge belongs to the polygon listed first in the layer (deterministic).
        """
        pts = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        out = np.full(len(pts), None, dtype=object)
        inp, hit = self._trees[layer].query(pts, predicate="intersects")
        if len(inp):
            order = np.lexsort((hit, inp))
            inp, hit = inp[order], hit[order]
            first = np.unique(inp, return_index=True)[1]
            out[inp[first]] = self._ids[layer][hit[first]]
        return out

    def locate(self, lon: float, lat: float) -> Location:
        def one(layer: ContainerLayer) -> str | None:
            v = self.assign([lon], [lat], layer)[0]
            return None if v is None else str(v)

        return Location(one("communities"), one("compounds"), one("buildings"))

    # --- what is near a point ----------------------------------------------------------------------
    def nearby(self, lon: float, lat: float, radius_m: float) -> Nearby:
        """Units, shops and compounds within radius_m of (lon, lat), nearest first."""
        px, py = lonlat_to_metric(np.array([lon]), np.array([lat]))
        found: dict[str, list[Hit]] = {}
        for name, (x, y, ids, names, cats) in self._points.items():
            d = np.hypot(x - px[0], y - py[0])
            idx = np.flatnonzero(d <= radius_m)
            found[name] = sorted((Hit(ids[i], names[i], cats[i], float(d[i])) for i in idx), key=lambda h: h.distance_m)
        centre = shapely.points(px[0], py[0])
        idx = self._cp_tree_m.query(centre, predicate="dwithin", distance=radius_m)
        dist = shapely.distance(self._cp_metric[idx], centre)
        cp = self.layers.compounds
        hits = sorted(
            (Hit(str(cp["compound_id"].iat[i]), str(cp["name"].iat[i]), "compound", float(d))
             for i, d in zip(idx, dist, strict=True)),
            key=lambda h: h.distance_m,
        )  # fmt: skip
        circle = shapely.buffer(centre, radius_m, quad_segs=16)
        share = shapely.area(shapely.intersection(self._cp_metric[idx], circle)) / self._cp_area[idx]
        return Nearby(
            units=found["units"],
            shops=found["shops"],
            compounds=hits,
            households=int(self._cp_households[idx].sum()),
            households_in_radius=float((self._cp_households[idx] * share).sum()),
        )

    # --- which compounds a line crosses -------------------------------------------------------------
    def compounds_crossed(self, line: LineString | Sequence[tuple[float, float]]) -> list[str]:
        """Compounds a lon/lat line (pipe, road, route) passes through, in order along the line."""
        geom = line if isinstance(line, LineString) else LineString(line)
        idx = self._trees["compounds"].query(geom, predicate="intersects")
        if not len(idx):
            return []
        parts = shapely.intersection(self._geoms["compounds"][idx], geom)
        along = [geom.project(Point(shapely.get_coordinates(p)[0])) for p in parts]
        return [str(self._ids["compounds"][i]) for _, i in sorted(zip(along, idx, strict=True))]


@functools.lru_cache(maxsize=4)
def _index_for(layers: Layers) -> SpatialIndex:
    return SpatialIndex(layers)


def spatial_index(layers: Layers | None = None) -> SpatialIndex:
    """The SpatialIndex of the given (default: effective) layers, built once per Layers object."""
    if layers is None:
        from geodata.layers import load_layers

        layers = load_layers()
    return _index_for(layers)


def compound_risk(alerts: Iterable[Any], layers: Layers | None = None) -> dict[str, str]:
    """Roll up alert-like objects/dicts with `compound_id` and `severity` to every compound's level."""
    if layers is None:
        from geodata.layers import load_layers

        layers = load_layers()

    def pair(a: Any) -> tuple[str, str | None]:
        if isinstance(a, dict):
            return str(a["compound_id"]), a.get("severity")
        return str(a.compound_id), a.severity

    return rollup((pair(a) for a in alerts), keys=layers.compounds["compound_id"].astype(str))
