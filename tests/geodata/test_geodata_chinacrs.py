"""GCJ-02 / BD-09 conversions against published vectors of two widely used open-source converters.

- googollee/eviltransform, python/test.py: WGS-84 -> GCJ-02 pairs for Shanghai, Shenzhen, Beijing.
  (Its BD-09 pairs are not used: its own formula does not reproduce them to better than ~10 m.)
- wandergis/coordtransform, test/app.js: the (116.404, 39.915) results. Its gcj02towgs84 and
  bd09togcj02 are the one-step approximate inverses, so ours (exact) must agree only to ~1 m.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from geodata.chinacrs import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    geometry_to_wgs84,
    out_of_china,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

EVILTRANSFORM = [  # wgsLat, wgsLng, gcjLat, gcjLng
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    kx = 111_320.0 * math.cos(math.radians(lat1))
    return math.hypot((lon1 - lon2) * kx, (lat1 - lat2) * 110_940.0)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM)
def test_wgs_to_gcj_matches_eviltransform(wlat: float, wlon: float, glat: float, glon: float) -> None:
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    assert lon == pytest.approx(glon, abs=1e-9) and lat == pytest.approx(glat, abs=1e-9)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM)
def test_gcj_to_wgs_is_exact(wlat: float, wlon: float, glat: float, glon: float) -> None:
    lon, lat = gcj02_to_wgs84(glon, glat)
    assert metres(lon, lat, wlon, wlat) < 0.01  # eviltransform's own "exact" asks < 0.5 m


def test_coordtransform_vectors() -> None:
    assert gcj02_to_bd09(116.404, 39.915) == pytest.approx((116.41036949371029, 39.92133699351021), abs=1e-9)
    assert wgs84_to_gcj02(116.404, 39.915) == pytest.approx((116.41024449916938, 39.91640428150164), abs=1e-9)
    # Their inverses are the approximate one-step ones: ours is exact, so agree to within a metre.
    assert metres(*bd09_to_gcj02(116.404, 39.915), 116.39762729119315, 39.90865673957631) < 1.0
    assert metres(*gcj02_to_wgs84(116.404, 39.915), 116.39775550083061, 39.91359571849836) < 1.0


def test_outside_china_is_unchanged_by_gcj() -> None:
    for lon, lat in ((2.3522, 48.8566), (-74.0, 40.7), (139.7, 35.7)):
        assert wgs84_to_gcj02(lon, lat) == (lon, lat)
        assert gcj02_to_wgs84(lon, lat) == (lon, lat)
    assert out_of_china(np.array([2.0, 110.79]), np.array([48.0, 32.65])).tolist() == [True, False]


@settings(max_examples=200, deadline=None)
@given(st.floats(73.0, 135.0), st.floats(18.0, 53.0))
def test_round_trips_within_a_centimetre(lon: float, lat: float) -> None:
    assert metres(*gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat)), lon, lat) < 0.01
    assert metres(*bd09_to_wgs84(*wgs84_to_bd09(lon, lat)), lon, lat) < 0.01
    assert metres(*bd09_to_gcj02(*gcj02_to_bd09(lon, lat)), lon, lat) < 0.01


def test_offsets_at_shiyan_are_hundreds_of_metres() -> None:
    lon, lat = 110.79, 32.65
    assert 200 < metres(*wgs84_to_gcj02(lon, lat), lon, lat) < 800
    assert 800 < metres(*wgs84_to_bd09(lon, lat), lon, lat) < 2000


def test_arrays_and_geometries() -> None:
    lons, lats = np.array([110.78, 110.79, 110.80]), np.array([32.64, 32.65, 32.66])
    gx, gy = wgs84_to_gcj02(lons, lats)
    for i in range(3):
        assert (gx[i], gy[i]) == wgs84_to_gcj02(float(lons[i]), float(lats[i]))
    square = Polygon([(110.78, 32.64), (110.79, 32.64), (110.79, 32.65), (110.78, 32.65)])
    gcj = shapely.transform(square, lambda xy: np.column_stack(wgs84_to_gcj02(xy[:, 0], xy[:, 1])))
    back = geometry_to_wgs84(gcj, "gcj02")
    assert shapely.hausdorff_distance(back, square) < 1e-9
