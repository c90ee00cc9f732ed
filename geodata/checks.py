"""Consistency checks of the layers and a registry; an empty list means all is well."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import shapely

from core.contract import COMMUNITIES, DEVICE_ID_RE
from geodata.layers import Layers, to_metric

OVERLAP_M2 = 1.0  # shared edges give zero-area intersections; tolerate float dust below 1 m²


def _overlaps(geoms: np.ndarray, ids: list[str], what: str) -> list[str]:
    metric = to_metric(geoms)
    tree = shapely.STRtree(metric)
    a, b = tree.query(metric, predicate="intersects")
    out = []
    for i, j in zip(a, b, strict=True):
        if i < j and shapely.area(shapely.intersection(metric[i], metric[j])) > OVERLAP_M2:
            out.append(f"{what} {ids[i]} overlaps {ids[j]}")
    return out


def check_layers(layers: Layers) -> list[str]:
    problems: list[str] = []
    comm = layers.communities
    slugs = list(comm["community"])
    if sorted(slugs) != sorted(COMMUNITIES):
        problems.append(f"communities layer has {sorted(slugs)}, contract has {sorted(COMMUNITIES)}")
    comm_geom = dict(zip(comm["community"], comm.geometry, strict=True))
    problems += _overlaps(np.asarray(comm.geometry.values), slugs, "community")
    ids = Counter([*layers.compounds["compound_id"], *layers.units["unit_id"], *layers.shops["shop_id"]])
    problems += [f"id {i!r} used {n} times across compounds/units/shops" for i, n in ids.items() if n > 1]
    problems += [f"id {i!r} does not match {DEVICE_ID_RE.pattern}" for i in ids if not DEVICE_ID_RE.match(str(i))]
    cp = layers.compounds
    problems += _overlaps(np.asarray(cp.geometry.values), list(cp["compound_id"]), "compound")
    for frame, id_col, what in ((cp, "compound_id", "compound"), (layers.units, "unit_id", "unit"),
                                (layers.shops, "shop_id", "shop")):  # fmt: skip
        for pid, c, g in zip(frame[id_col], frame["community"], frame.geometry, strict=True):
            if c not in comm_geom:
                problems.append(f"{what} {pid}: unknown community {c!r}")
            elif not comm_geom[c].contains(g):
                problems.append(f"{what} {pid} is not inside community {c}")
    cgeom = dict(zip(cp["compound_id"], cp.geometry, strict=True))
    for bid, cid, g in zip(layers.buildings["building_id"], layers.buildings["compound_id"],
                           layers.buildings.geometry, strict=True):  # fmt: skip
        if cid not in cgeom or not cgeom[cid].contains(g):
            problems.append(f"building {bid} is not inside compound {cid}")
    for uid, cid, g in zip(layers.units["unit_id"], layers.units["compound_id"], layers.units.geometry, strict=True):
        if cid is not None and cid == cid and (cid not in cgeom or not cgeom[cid].contains(g)):  # cid==cid: not NaN
            problems.append(f"unit {uid} is not inside its compound {cid}")
    problems += _check_resources(layers, comm_geom)
    for frame, what in ((cp, "compound"), (layers.buildings, "building"), (comm, "community")):
        bad = ~shapely.is_valid(np.asarray(frame.geometry.values))
        problems += [f"{what} #{i}: invalid geometry" for i in np.flatnonzero(bad)]
    return problems


def _check_resources(layers: Layers, comm_geom: dict[str, shapely.Geometry]) -> list[str]:
    """Valves, hydrants, teams, shelters, AEDs: known category, what a valve closes exists, in its community."""
    from geodata.resources import row_problems

    res = layers.resources
    closable = set(layers.closable)
    ids = Counter(map(str, res["resource_id"]))
    problems = [f"resource id {i!r} used {n} times" for i, n in ids.items() if n > 1]
    problems += [f"resource id {i!r} does not match {DEVICE_ID_RE.pattern}" for i in ids if not DEVICE_ID_RE.match(i)]
    for rid, cat, c, closes, serves, g in zip(res["resource_id"], res["category"], res["community"], res["closes"],
                                              res["serves"], res.geometry, strict=True):  # fmt: skip
        problems += [f"resource {rid}: {p}" for p in row_problems(cat, closes, serves, closable)]
        if c not in comm_geom:
            problems.append(f"resource {rid}: unknown community {c!r}")
        elif not comm_geom[c].contains(g):
            problems.append(f"resource {rid} is not inside community {c}")
    return problems


def check_registry(layers: Layers, path: Path) -> list[str]:
    """Every device of the registry file as an import would check it (ids, places, tolerance)."""
    from geodata.importer import DeviceImportError, validate_rows

    try:
        validate_rows(path, path.read_bytes(), layers)
    except DeviceImportError as exc:
        return [str(p) for p in exc.problems]
    return []
