"""WGS-84 <-> GCJ-02 (Amap, Tencent, Google China) <-> BD-09 (Baidu), vectorised with numpy.

The forward GCJ-02 offset is the widely published obfuscation formula (Krasovsky 1940 ellipsoid
constants). Its inverse has no closed form; the usual one-step "subtract the offset" inverse is off by
1-2 m, so `gcj02_to_wgs84` iterates to a fixed point instead (exact to ~1e-9 degree, a few mm).
BD-09 is a further rotation/shift on top of GCJ-02; its inverse is refined the same way.
Outside China GCJ-02 leaves coordinates unchanged (as the reference implementations do).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import overload

import numpy as np
import shapely

A = 6378245.0  # Krasovsky 1940 semi-major axis, as used by GCJ-02
EE = 0.00669342162296594323  # its first eccentricity squared
X_PI = math.pi * 3000.0 / 180.0
_TOL_DEG = 1e-10
_MAX_ITER = 30

ArrayLike = float | np.ndarray


def out_of_china(lon: ArrayLike, lat: ArrayLike) -> np.ndarray:
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    return ~((lon >= 72.004) & (lon <= 137.8347) & (lat >= 0.8293) & (lat <= 55.8271))


def _offset(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 minus WGS-84, in degrees, at a WGS-84 position."""
    x, y = lon - 105.0, lat - 35.0
    s = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * s + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * s + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * np.pi
    magic = 1.0 - EE * np.sin(rad) ** 2
    sq = np.sqrt(magic)
    dlat = dlat * 180.0 / ((A * (1.0 - EE)) / (magic * sq) * np.pi)
    dlon = dlon * 180.0 / (A / sq * np.cos(rad) * np.pi)
    return dlon, dlat


@overload
def _out(a: np.ndarray, b: np.ndarray, like: float) -> tuple[float, float]: ...
@overload
def _out(a: np.ndarray, b: np.ndarray, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
def _out(a: np.ndarray, b: np.ndarray, like: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    if np.ndim(like) == 0:
        return float(a), float(b)
    return a, b


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    lo, la = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlon, dlat = _offset(lo, la)
    outside = out_of_china(lo, la)
    return _out(np.where(outside, lo, lo + dlon), np.where(outside, la, la + dlat), lon)


def _invert(
    forward: Callable[[np.ndarray, np.ndarray], tuple[ArrayLike, ArrayLike]],
    x: np.ndarray,
    y: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve forward(w) = (x, y) from the first guess (gx, gy) by fixed-point iteration.

    The offsets vary slowly (derivative << 1), so w <- w - (forward(w) - target) converges fast.
    """
    wx, wy = gx.copy(), gy.copy()
    for _ in range(_MAX_ITER):
        fx, fy = forward(wx, wy)
        ex, ey = np.asarray(fx) - x, np.asarray(fy) - y
        wx, wy = wx - ex, wy - ey
        if np.nanmax(np.abs(np.concatenate([np.ravel(ex), np.ravel(ey)])), initial=0.0) < _TOL_DEG:
            break
    return wx, wy


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    lo, la = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlon, dlat = _offset(lo, la)
    wx, wy = _invert(wgs84_to_gcj02, lo, la, lo - dlon, la - dlat)
    outside = out_of_china(lo, la)
    return _out(np.where(outside, lo, wx), np.where(outside, la, wy), lon)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    x, y = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * X_PI)
    return _out(z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006, lon)


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    bx, by = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    x, y = bx - 0.0065, by - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * X_PI)
    # The closed form above is the usual approximate inverse; refine it to the exact one.
    gx, gy = _invert(gcj02_to_bd09, bx, by, z * np.cos(theta), z * np.sin(theta))
    return _out(gx, gy, lon)


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    gx, gy = wgs84_to_gcj02(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    bx, by = gcj02_to_bd09(gx, gy)
    return _out(np.asarray(bx), np.asarray(by), lon)


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    gx, gy = bd09_to_gcj02(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    wx, wy = gcj02_to_wgs84(gx, gy)
    return _out(np.asarray(wx), np.asarray(wy), lon)


TO_WGS84: dict[str, Callable[[ArrayLike, ArrayLike], tuple[ArrayLike, ArrayLike]]] = {
    "gcj02": gcj02_to_wgs84,
    "bd09": bd09_to_wgs84,
}


def geometry_to_wgs84(geoms: np.ndarray | shapely.Geometry, datum: str) -> np.ndarray | shapely.Geometry:
    """Convert shapely geometries (lon/lat in GCJ-02 or BD-09) to WGS-84, vertex by vertex."""
    conv = TO_WGS84[datum]

    def f(xy: np.ndarray) -> np.ndarray:
        x, y = conv(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, f)
