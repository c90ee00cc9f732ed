"""GIS layers and spatial queries (the device registry itself is core.registry) for the Checheng Road sub-district.

Kept import-light on purpose: modules that need geopandas import it themselves.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "data"
LAYER_NAMES: tuple[str, ...] = ("communities", "compounds", "buildings", "units", "shops", "roads", "water",
                              "resources")
# EPSG:4546 = CGCS2000 / 3-degree Gauss-Kruger CM 111E, the national metric grid for Shiyan (110.8 E).
METRIC_CRS = "EPSG:4546"
# How far (metres) a device may sit outside the polygon / from the point of its compound, unit or shop.
LOCATION_TOLERANCE_M = 30.0

__all__ = ["BUNDLED_DIR", "LAYER_NAMES", "LOCATION_TOLERANCE_M", "METRIC_CRS"]
