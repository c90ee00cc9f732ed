"""The other inputs of `geodata basemap`, turned into the raster MBTiles the dashboard serves
(geodata/basemap.py): a georeferenced orthophoto (GeoTIFF or any raster GDAL reads, in any CRS, e.g. CGCS2000
Gauss–Krüger EPSG:4546) cut into Web Mercator PNG tiles, and a raster PMTiles archive unpacked tile by tile.

The orthophoto is warped (rasterio's WarpedVRT, bilinear) onto the tile grid of its deepest zoom, the zoom
whose tile pixel is nearest the image's own resolution, and read one 256×256 tile at a time; each shallower
zoom is then made from the four tiles below it, down to ZOOM_LEVELS levels under the deepest. So memory
holds a few tiles plus GDAL's block cache (GDAL_CACHEMAX_MB), whatever the image's size. Outside the image
(and where it is nodata / transparent) tiles are transparent; wholly empty tiles are not stored.
"""

from __future__ import annotations

import gzip
import io
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from geodata.basemap import BasemapError

TILE = 256
WEB_MERCATOR_HALF = 20037508.342789244  # metres from the Web Mercator origin to the map's edge
ZOOM_LEVELS = 6  # zooms cut: the deepest and the five below it (each level quarters the tile count)
MAX_ZOOM = 22  # a finer orthophoto is cut at 22 (≈ 3 cm a pixel here): the map zooms no further
GDAL_CACHEMAX_MB = 64

_PMTILES_TYPES = {2: "png", 3: "jpg", 4: "webp"}  # pmtiles TileType values of raster tiles


def _new_mbtiles(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    con.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    con.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
    return con


def _write_metadata(con: sqlite3.Connection, meta: dict[str, object]) -> None:
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])


def _put(con: sqlite3.Connection, z: int, x: int, y: int, blob: bytes) -> None:
    con.execute("INSERT OR REPLACE INTO tiles VALUES (?, ?, ?, ?)", (z, x, 2**z - 1 - y, blob))


# --- PMTiles -----------------------------------------------------------------------------------------------

def pmtiles_header(src: Path) -> dict[str, object]:
    """The v3 header of a PMTiles archive; BasemapError when it is none or holds vector tiles."""
    from pmtiles.tile import MagicNumberNotFound, SpecVersionUnsupported, deserialize_header

    with open(src, "rb") as f:
        head = f.read(127)
    try:
        header = dict(deserialize_header(head))
    except MagicNumberNotFound:
        raise BasemapError(f"{src} is no PMTiles archive") from None
    except SpecVersionUnsupported:
        raise BasemapError(f"{src} is a PMTiles archive of version {head[7]}; only version 3 is read "
                           "(convert it with `pmtiles convert`)") from None
    except (ValueError, IndexError) as exc:  # a truncated header, an unknown enum value
        raise BasemapError(f"{src} is a damaged PMTiles archive ({exc})") from None
    kind = header["tile_type"].value  # type: ignore[attr-defined]
    if kind not in _PMTILES_TYPES:
        name = header["tile_type"].name.lower()  # type: ignore[attr-defined]
        what = "vector tiles, not supported" if name in ("mvt", "mlt") else "an unknown tile type"
        raise BasemapError(f"{src} is a PMTiles archive of {name} tiles ({what}); "
                           "the basemap takes raster tiles (png, jpg, webp)")
    header["format"] = _PMTILES_TYPES[kind]
    header["bounds"] = tuple(int(header[k]) / 1e7  # type: ignore[call-overload]
                             for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7"))
    return header


def pmtiles_to_mbtiles(src: Path, dst: Path) -> None:
    """Unpack the raster PMTiles `src` into a new MBTiles `dst`, one tile at a time (run-length entries,
    which PMTiles keeps for repeated tiles, become one row each)."""
    from pmtiles.reader import MmapSource, Reader, all_tiles
    from pmtiles.tile import Compression

    header = pmtiles_header(src)
    w, s, e, n = header["bounds"]  # type: ignore[misc]
    con = _new_mbtiles(dst)
    try:
        with open(src, "rb") as f:
            source = MmapSource(f)
            try:
                meta = Reader(source).metadata()
                name = str(meta.get("name") or src.stem) if isinstance(meta, dict) else src.stem
                gz = header["tile_compression"] == Compression.GZIP
                for (z, x, y), blob in all_tiles(source):
                    _put(con, z, x, y, gzip.decompress(blob) if gz else bytes(blob))
            except (ValueError, IndexError, OSError, EOFError) as exc:
                raise BasemapError(f"{src} is a damaged PMTiles archive ({exc})") from None
            finally:
                del source  # the mmap closes when its last reference goes
        _write_metadata(con, {"name": name, "format": header["format"], "type": "baselayer",
                              "bounds": f"{w:.7f},{s:.7f},{e:.7f},{n:.7f}",
                              "minzoom": header["min_zoom"], "maxzoom": header["max_zoom"]})
        con.commit()
    finally:
        con.close()


# --- GeoTIFF (any georeferenced raster GDAL reads) ---------------------------------------------------------

def _open_raster(src: Path) -> object:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # said, as an error, by _check_georeferenced
        try:
            return rasterio.open(src)
        except RasterioIOError:
            raise BasemapError(f"{src} is not a raster image (GeoTIFF) nor an MBTiles / PMTiles tile set") \
                from None


def raster_lonlat_bounds(src: Path) -> tuple[float, float, float, float]:
    """The lon/lat box of a georeferenced raster; BasemapError saying what is missing when it is not one."""
    from rasterio.warp import transform_bounds

    with _open_raster(src) as ds:  # type: ignore[attr-defined]
        _check_georeferenced(ds, src)
        return tuple(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))  # type: ignore[return-value]


def _check_georeferenced(ds: object, src: Path) -> None:
    from affine import Affine

    if ds.transform == Affine.identity() and not ds.gcps[0]:  # type: ignore[attr-defined]
        raise BasemapError(f"{src} has no georeference (no geotransform: where its pixels lie is unknown); "
                           "the survey office's GeoTIFF carries one, or a .tfw world file beside it")
    if ds.transform == Affine.identity():  # type: ignore[attr-defined]
        raise BasemapError(f"{src} is georeferenced by control points only; warp it first "
                           "(gdalwarp -t_srs EPSG:4546 in.tif out.tif)")
    if ds.crs is None:  # type: ignore[attr-defined]
        raise BasemapError(f"{src} has no coordinate system (CRS); state it, e.g. "
                           "`gdal_edit.py -a_srs EPSG:4546 FILE` (CGCS2000 3° Gauss–Krüger, CM 111 E) or a .prj")
    if ds.dtypes[0] != "uint8":  # type: ignore[attr-defined]
        raise BasemapError(f"{src} has {ds.dtypes[0]} pixels; the basemap takes 8-bit images "  # type: ignore[attr-defined]
                           "(scale it first: gdal_translate -ot Byte -scale)")
    if ds.count not in (1, 2, 3, 4):  # type: ignore[attr-defined]
        raise BasemapError(f"{src} has {ds.count} bands; the basemap takes grey, RGB or RGBA")  # type: ignore[attr-defined]


def _zoom_for(res_m: float) -> int:
    """The zoom whose tile pixel (Web Mercator metres) is nearest `res_m`."""
    z = round(math.log2(2 * WEB_MERCATOR_HALF / TILE / res_m))
    return max(0, min(MAX_ZOOM, z))


def _encode(rgba: object) -> bytes | None:
    """A PNG of an RGBA PIL image; None when it is wholly transparent (RGB when wholly opaque: smaller)."""
    lo, hi = rgba.getchannel("A").getextrema()  # type: ignore[attr-defined]
    if hi == 0:
        return None
    img = rgba.convert("RGB") if lo == 255 else rgba  # type: ignore[attr-defined]
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def geotiff_to_mbtiles(src: Path, dst: Path) -> tuple[int, int]:
    """Cut the georeferenced raster `src` into Web Mercator PNG tiles in a new MBTiles `dst`; (minzoom,
    maxzoom)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from PIL import Image
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform, transform_bounds
    from rasterio.windows import Window

    con = _new_mbtiles(dst)
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHEMAX_MB), _open_raster(src) as ds:  # type: ignore[attr-defined]
            _check_georeferenced(ds, src)
            merc, _, _ = calculate_default_transform(ds.crs, "EPSG:3857", ds.width, ds.height, *ds.bounds)
            zmax = _zoom_for(abs(merc.a))
            zmin = max(0, zmax - ZOOM_LEVELS + 1)
            span = 2 * WEB_MERCATOR_HALF / 2**zmax  # a tile's width in metres
            mx0, my0, mx1, my1 = transform_bounds(ds.crs, "EPSG:3857", *ds.bounds, densify_pts=21)
            tx0, tx1 = int((mx0 + WEB_MERCATOR_HALF) // span), int((mx1 + WEB_MERCATOR_HALF) // span)
            ty0, ty1 = int((WEB_MERCATOR_HALF - my1) // span), int((WEB_MERCATOR_HALF - my0) // span)
            tx0, ty0 = max(tx0, 0), max(ty0, 0)
            tx1, ty1 = min(tx1, 2**zmax - 1), min(ty1, 2**zmax - 1)
            grid = Affine(span / TILE, 0, -WEB_MERCATOR_HALF + tx0 * span,
                          0, -span / TILE, WEB_MERCATOR_HALF - ty0 * span)
            interp = list(ds.colorinterp)
            colour = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
            has_alpha = len(colour) < ds.count
            palette = ds.colormap(1) if ds.count == 1 and interp[0] == ColorInterp.palette else None
            with WarpedVRT(ds, crs="EPSG:3857", transform=grid, width=(tx1 - tx0 + 1) * TILE,
                           height=(ty1 - ty0 + 1) * TILE, resampling=Resampling.bilinear,
                           add_alpha=not has_alpha and ds.nodata is None) as vrt:
                for ty in range(ty0, ty1 + 1):
                    for tx in range(tx0, tx1 + 1):
                        win = Window((tx - tx0) * TILE, (ty - ty0) * TILE, TILE, TILE)
                        bands = vrt.read(colour, window=win)
                        mask = vrt.dataset_mask(window=win)
                        if not mask.any():
                            continue
                        if palette is not None:
                            lut = np.array([palette.get(i, (0, 0, 0, 0))[:3] for i in range(256)], np.uint8)
                            rgb = lut[bands[0]]
                        else:
                            rgb = np.dstack([bands[0]] * 3 if len(colour) == 1 else bands[:3])
                        img = Image.fromarray(np.dstack([rgb, mask]).astype(np.uint8), "RGBA")
                        blob = _encode(img)
                        if blob is not None:
                            _put(con, zmax, tx, ty, blob)
        for z in range(zmax - 1, zmin - 1, -1):
            _overview(con, z)
        lon0, lat0, lon1, lat1 = raster_lonlat_bounds(src)
        _write_metadata(con, {"name": src.stem, "format": "png", "type": "baselayer",
                              "bounds": f"{lon0:.7f},{lat0:.7f},{lon1:.7f},{lat1:.7f}",
                              "minzoom": zmin, "maxzoom": zmax})
        con.commit()
    finally:
        con.close()
    return zmin, zmax


def _overview(con: sqlite3.Connection, z: int) -> None:
    """Zoom z made from zoom z+1: each tile from its (up to) four children, halved."""
    from PIL import Image

    rows: Iterable[tuple[int, int]] = con.execute(
        "SELECT DISTINCT tile_column / 2, (? - tile_row) / 2 FROM tiles WHERE zoom_level = ?",
        (2 ** (z + 1) - 1, z + 1)).fetchall()
    for px, py in rows:
        canvas = Image.new("RGBa", (2 * TILE, 2 * TILE))
        for dx in (0, 1):
            for dy in (0, 1):
                x, y = 2 * px + dx, 2 * py + dy
                row = con.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                                  (z + 1, x, 2 ** (z + 1) - 1 - y)).fetchone()
                if row:
                    # premultiplied, so transparent edges do not darken the colours next to them
                    canvas.paste(Image.open(io.BytesIO(row[0])).convert("RGBA").convert("RGBa"), (dx * TILE, dy * TILE))
        blob = _encode(canvas.resize((TILE, TILE), Image.Resampling.BOX).convert("RGBA"))
        if blob is not None:
            _put(con, z, px, py, blob)
