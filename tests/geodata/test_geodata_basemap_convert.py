"""`smartcommunity geodata basemap FILE` with an orthophoto GeoTIFF (made here with rasterio, in CGCS2000
Gauss–Krüger EPSG:4546 over the street) or a PMTiles archive (made here with the pmtiles package): each is
installed as the served MBTiles and a tile read back; a GeoTIFF without CRS or georeference, a vector
PMTiles and a file that is no raster are refused, nothing installed."""

from __future__ import annotations

import io
import math
import sqlite3
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine
from PIL import Image
from pmtiles.convert import mbtiles_to_pmtiles

from core.settings import Settings
from geodata.basemap import TileReader, basemap_path, read_tileset
from geodata.basemap_convert import TILE, WEB_MERCATOR_HALF
from geodata.layers import load_bundled_layers
from tests.geodata.test_geodata_basemap import Cli, make_mbtiles, street_bounds, tile_xy

COLOUR = (30, 120, 200)
GROUND_RES_M = 3.4  # a coarse orthophoto keeps the test small: ~2k × 2k pixels, deepest zoom 15 here


def make_geotiff(path: Path, crs: str | None = "EPSG:4546", georeferenced: bool = True) -> None:
    """A solid COLOUR RGB GeoTIFF covering the street (plus 0.01°): coordinates in EPSG:4546, labelled `crs`."""
    w, s, e, n = street_bounds()
    xs, ys = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:4546", always_xy=True).transform(
        [w, e, w, e], [s, s, n, n])
    x0, y1 = min(xs), max(ys)
    width, height = int((max(xs) - x0) / GROUND_RES_M), int((y1 - min(ys)) / GROUND_RES_M)
    data = np.empty((3, height, width), np.uint8)
    for band, v in enumerate(COLOUR):
        data[band] = v
    profile: dict[str, object] = {"driver": "GTiff", "width": width, "height": height, "count": 3,
                                  "dtype": "uint8", "tiled": True}
    if crs:
        profile["crs"] = crs
    if georeferenced:
        profile["transform"] = Affine(GROUND_RES_M, 0, x0, 0, -GROUND_RES_M, y1)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)


def _pixel(lon: float, lat: float, z: int) -> tuple[int, int, tuple[int, int]]:
    """The XYZ tile holding (lon, lat) at zoom z, and the pixel in it."""
    n = 2**z
    fx, fy = (lon + 180) / 360 * n, (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int(fx), int(fy), (int(fx % 1 * TILE), int(fy % 1 * TILE))


def _centre() -> tuple[float, float]:
    pt = load_bundled_layers().communities.geometry.values[0].representative_point()
    return float(pt.x), float(pt.y)


def test_orthophoto_geotiff_is_cut_into_tiles(cli: Cli, tmp_path: Path, geo_settings: Settings) -> None:
    src = tmp_path / "ortho.tif"
    make_geotiff(src)
    rc, out, err = cli("geodata", "basemap", src)
    assert rc == 0, err
    ts = read_tileset(basemap_path(geo_settings))
    assert ts.format == "png" and f"zoom {ts.minzoom}-{ts.maxzoom}" in out
    # The deepest zoom's tile pixel is the image's own resolution, within a factor √2 (Web Mercator metres).
    lon, lat = _centre()
    pixel_m = 2 * WEB_MERCATOR_HALF / 2**ts.maxzoom / TILE * math.cos(math.radians(lat))
    assert GROUND_RES_M / 2**0.5 <= pixel_m <= GROUND_RES_M * 2**0.5, (ts.maxzoom, pixel_m)
    assert ts.maxzoom - ts.minzoom >= 3
    reader = TileReader(basemap_path(geo_settings))
    for z in (ts.minzoom, ts.maxzoom):
        x, y, px = _pixel(lon, lat, z)
        img = Image.open(io.BytesIO(reader.tile(z, x, y) or b"")).convert("RGBA")
        assert img.getpixel(px) == (*COLOUR, 255), z
    # Outside the image the tiles are transparent: the tile at its north-west corner, at its own corner.
    w, _, _, n = street_bounds()
    x, y = tile_xy(w, n, ts.maxzoom)
    corner = Image.open(io.BytesIO(reader.tile(ts.maxzoom, x, y) or b"")).convert("RGBA")
    assert corner.getpixel((0, 0))[3] == 0 and corner.getpixel((255, 255)) == (*COLOUR, 255)
    assert reader.tile(ts.maxzoom, x - 1, y) is None


def test_geotiff_without_crs_or_georeference_is_refused(cli: Cli, tmp_path: Path, geo_settings: Settings) -> None:
    no_crs = tmp_path / "no_crs.tif"
    make_geotiff(no_crs, crs=None)
    rc, _, err = cli("geodata", "basemap", no_crs)
    assert rc == 2 and "has no coordinate system (CRS)" in err and "EPSG:4546" in err
    bare = tmp_path / "bare.tif"
    make_geotiff(bare, crs=None, georeferenced=False)
    rc, _, err = cli("geodata", "basemap", bare)
    assert rc == 2 and "has no georeference" in err
    # Gauss–Krüger coordinates labelled with the zone west of the street's land ~280 km away: refused uncut.
    wrong_zone = tmp_path / "wrong_zone.tif"
    make_geotiff(wrong_zone, crs="EPSG:4545")
    rc, _, err = cli("geodata", "basemap", wrong_zone)
    assert rc == 2 and "not the street" in err
    garbage = tmp_path / "ortho.tif"
    garbage.write_bytes(b"this is no image at all\n" * 40)
    rc, _, err = cli("geodata", "basemap", garbage)
    assert rc == 2 and "is not a raster image" in err
    assert not basemap_path(geo_settings).exists()


def make_pmtiles(path: Path, zooms: range, colour: tuple[int, int, int], fmt: str = "png") -> int:
    """A PMTiles of solid `colour` tiles over the street, by the pmtiles package's own MBTiles converter."""
    mbt = path.with_suffix(".mbtiles")
    n = make_mbtiles(mbt, street_bounds(), zooms, colour)
    with sqlite3.connect(mbt) as con:
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [("minzoom", zooms[0]), ("maxzoom", zooms[-1])])
        con.execute("UPDATE metadata SET value=? WHERE name='format'", (fmt,))
    con.close()
    mbtiles_to_pmtiles(str(mbt), str(path), None)
    return n


def test_pmtiles_archive_is_installed(cli: Cli, tmp_path: Path, geo_settings: Settings) -> None:
    src = tmp_path / "ortho.pmtiles"
    n = make_pmtiles(src, range(13, 15), (200, 90, 20))
    rc, out, err = cli("geodata", "basemap", src)
    assert rc == 0, err
    assert f"{n} png tiles, zoom 13-14" in out
    reader = TileReader(basemap_path(geo_settings))
    x, y = tile_xy(*_centre(), 14)
    assert Image.open(io.BytesIO(reader.tile(14, x, y) or b"")).getpixel((7, 7))[:3] == (200, 90, 20)
    assert reader.tile(14, x + 200, y) is None


def test_vector_or_damaged_pmtiles_is_refused(cli: Cli, tmp_path: Path, geo_settings: Settings) -> None:
    vector = tmp_path / "v.pmtiles"
    make_pmtiles(vector, range(12, 13), (1, 2, 3), fmt="pbf")
    rc, _, err = cli("geodata", "basemap", vector)
    assert rc == 2 and "PMTiles archive of mvt tiles (vector tiles, not supported)" in err
    broken = tmp_path / "b.pmtiles"
    broken.write_bytes(b"PMTiles\x03" + bytes(20))
    rc, _, err = cli("geodata", "basemap", broken)
    assert rc == 2 and "PMTiles" in err
    assert not basemap_path(geo_settings).exists()
