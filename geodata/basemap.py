"""The street's own offline basemap: a raster MBTiles tile set (e.g. the survey office's orthophoto cut into
tiles) that the dashboard serves itself, under the drawn layers.

`smartcommunity geodata basemap FILE` checks the file (an SQLite `tiles` table of PNG / JPEG / WebP
tiles that covers the street) and copies it, consistently (SQLite's backup API), to
`<SC_DATA_DIR>/basemap/basemap.mbtiles`; a raster PMTiles or a georeferenced GeoTIFF is first turned into
such an MBTiles (geodata/basemap_convert.py). MBTiles rows are TMS: row 0 is the south edge, so the XYZ y a map
asks for is flipped (`2**z - 1 - y`).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

RASTER_FORMATS = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
_MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpg"), (b"RIFF", "webp"))


class BasemapError(ValueError):
    pass


@dataclass(frozen=True)
class TileSet:
    path: Path
    format: str
    minzoom: int
    maxzoom: int
    bounds: tuple[float, float, float, float]
    tiles: int
    version: str  # changes when the file is replaced: part of the tile URLs, so browsers fetch the new tiles

    @property
    def mimetype(self) -> str:
        return RASTER_FORMATS[self.format]


def basemap_path(settings: Settings) -> Path:
    return settings.data_path / "basemap" / "basemap.mbtiles"


def _tile_lonlat(z: int, x: int, y_xyz: int) -> tuple[float, float]:
    n = 2**z
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y_xyz / n))))
    return x / n * 360.0 - 180.0, lat


def read_tileset(path: Path) -> TileSet:
    """What a raster MBTiles holds; BasemapError saying why when it is not one."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BasemapError(f"cannot open {path} ({exc})") from None
    try:
        try:
            rows = con.execute("SELECT zoom_level, MIN(tile_column), MAX(tile_column), MIN(tile_row), "
                               "MAX(tile_row), COUNT(*) FROM tiles GROUP BY zoom_level").fetchall()
            meta = dict(con.execute("SELECT name, value FROM metadata").fetchall())
            first = con.execute("SELECT tile_data FROM tiles LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BasemapError(f"{path} is no MBTiles tile set ({exc}): it needs the tables tiles and metadata") \
                from None
    finally:
        con.close()
    if not rows or first is None:
        raise BasemapError(f"{path} holds no tiles")
    fmt = str(meta.get("format") or "").lower()
    if not fmt:
        blob = bytes(first[0])
        fmt = next((f for magic, f in _MAGIC if blob.startswith(magic)), "")
    if fmt in ("pbf", "mvt"):
        raise BasemapError(f"{path} is a vector tile set ({fmt}); the basemap takes raster tiles (png, jpg, webp)")
    if fmt not in RASTER_FORMATS:
        raise BasemapError(f"{path}: tile format {fmt or 'unknown'!r}; the basemap takes png, jpg or webp tiles")
    zooms = [int(r[0]) for r in rows]
    if "bounds" in meta:
        try:
            w, s, e, n = (float(v) for v in str(meta["bounds"]).split(","))
        except ValueError:
            raise BasemapError(f"{path}: metadata bounds {meta['bounds']!r} is not west,south,east,north") from None
    else:  # from the deepest zoom's tile range (TMS rows: the highest row is the north edge)
        z, x0, x1, r0, r1, _ = max(rows)
        w, n = _tile_lonlat(z, x0, 2**z - 1 - r1)
        e, s = _tile_lonlat(z, x1 + 1, 2**z - r0)
    st = path.stat()
    return TileSet(path, fmt, min(zooms), max(zooms), (w, s, e, n), sum(int(r[5]) for r in rows),
                   f"{st.st_mtime_ns:x}{st.st_size:x}")


def _kind(src: Path) -> str:
    """What `src` is by its first bytes: mbtiles (SQLite), pmtiles, or raster (left to GDAL)."""
    try:
        with open(src, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise BasemapError(f"cannot open {src} ({exc.strerror})") from None
    if head.startswith(b"SQLite format 3\0"):
        return "mbtiles"
    if head.startswith(b"PMTiles"):
        return "pmtiles"
    return "raster"


def _check_covers(src: Path, bounds: tuple[float, float, float, float], settings: Settings) -> None:
    from geodata.layers import layers_dir, load_layers
    from geodata.survey import street_extent

    w, s, e, n = bounds
    sw, ss, se, sn = street_extent(load_layers(layers_dir(settings)))
    if e <= sw or w >= se or n <= ss or s >= sn:
        raise BasemapError(f"{src} covers lon {w:.4f}..{e:.4f}, lat {s:.4f}..{n:.4f}, not the street "
                           f"(lon {sw:.4f}..{se:.4f}, lat {ss:.4f}..{sn:.4f})")


def install(src: Path, settings: Settings) -> TileSet:
    """Check `src` covers the street and install it as basemap_path(settings), replacing any earlier basemap:
    an MBTiles is copied; a PMTiles unpacked and a georeferenced raster (GeoTIFF orthophoto) cut into tiles
    (geodata/basemap_convert.py), both into MBTiles, so the dashboard serves one format, from SQLite."""
    from geodata import basemap_convert as conv

    kind = _kind(src)
    target = basemap_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        if kind == "mbtiles":
            _check_covers(src, read_tileset(src).bounds, settings)
            with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(tmp) as b:
                a.backup(b)
            b.close()
        elif kind == "pmtiles":
            _check_covers(src, conv.pmtiles_header(src)["bounds"], settings)  # type: ignore[arg-type]
            conv.pmtiles_to_mbtiles(src, tmp)
        else:
            _check_covers(src, conv.raster_lonlat_bounds(src), settings)
            conv.geotiff_to_mbtiles(src, tmp)
        read_tileset(tmp)  # e.g. a PMTiles without tiles, an image with no pixel in any tile
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return read_tileset(target)


class TileReader:
    """Tiles of the installed basemap for the dashboard: reopened when the file is replaced, one read-only
    connection shared under a lock (a tile read is a primary-key lookup: microseconds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._ts: TileSet | None = None

    def current(self) -> TileSet | None:
        """The tile set now installed, or None."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                if self._con is not None:
                    self._con.close()
                    self._con = None
                try:
                    self._ts = read_tileset(self.path)
                    self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                except BasemapError:
                    self._ts = None
                self._stamp = stamp
            return self._ts

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at XYZ (z, x, y), or None."""
        if self.current() is None:
            return None
        with self._lock:
            if self._con is None:
                return None
            row = self._con.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                                    (z, x, 2**z - 1 - y)).fetchone()
        return bytes(row[0]) if row else None
