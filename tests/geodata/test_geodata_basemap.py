"""`smartcommunity geodata basemap FILE.mbtiles`: a raster tile set made here (Pillow + sqlite3) over the street
is checked and installed; a vector set, an empty one, a file that is no MBTiles and one elsewhere are refused."""

from __future__ import annotations

import io
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from core.settings import Settings
from geodata.basemap import TileReader, basemap_path, read_tileset
from geodata.layers import load_bundled_layers

Cli = Callable[..., tuple[int, str, str]]


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def make_mbtiles(path: Path, bounds: tuple[float, float, float, float], zooms: range, colour: tuple[int, int, int],
                 fmt: str = "png", metadata: bool = True) -> int:
    """A raster MBTiles of solid `colour` tiles covering `bounds` (lon/lat) at `zooms`; returns the tile count."""
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buf, format="PNG" if fmt == "png" else "JPEG")
    blob = buf.getvalue()
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    con.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    con.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
    if metadata:
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [
            ("name", "test orthophoto"), ("format", fmt), ("type", "baselayer"),
            ("bounds", ",".join(f"{v:.6f}" for v in bounds))])
    w, s, e, n = bounds
    count = 0
    for z in zooms:
        (x0, y0), (x1, y1) = tile_xy(w, n, z), tile_xy(e, s, z)
        rows = [(z, x, 2**z - 1 - y, blob) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        con.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
        count += len(rows)
    con.commit()
    con.close()
    return count


def street_bounds(margin: float = 0.01) -> tuple[float, float, float, float]:
    w, s, e, n = (float(v) for v in load_bundled_layers().communities.total_bounds)
    return (w - margin, s - margin, e + margin, n + margin)


def test_raster_tile_set_over_the_street_is_installed(cli: Cli, tmp_path: Path, geo_settings: Settings) -> None:
    src = tmp_path / "ortho.mbtiles"
    n = make_mbtiles(src, street_bounds(), range(12, 16), (200, 30, 160))
    rc, out, err = cli("geodata", "basemap", src)
    assert rc == 0, err
    assert f"{n} png tiles, zoom 12-15" in out
    target = basemap_path(geo_settings)
    ts = read_tileset(target)
    assert ts.tiles == n and ts.format == "png"
    reader = TileReader(target)
    lon, lat = (float(v) for v in load_bundled_layers().communities.geometry.values[0].representative_point().coords[0])
    x, y = tile_xy(lon, lat, 14)
    img = Image.open(io.BytesIO(reader.tile(14, x, y) or b""))
    assert img.getpixel((128, 128))[:3] == (200, 30, 160)
    assert reader.tile(14, x + 200, y) is None
    # Replacing the basemap is seen by a running reader (a new version for the tile URLs).
    v0 = reader.current().version  # type: ignore[union-attr]
    make_mbtiles(src2 := tmp_path / "ortho2.mbtiles", street_bounds(), range(13, 15), (10, 200, 10), metadata=False)
    rc, out, err = cli("geodata", "basemap", src2)
    assert rc == 0, err
    assert "zoom 13-14" in out
    assert reader.current().version != v0  # type: ignore[union-attr]
    assert Image.open(io.BytesIO(reader.tile(14, x, y) or b"")).getpixel((5, 5))[:3] == (10, 200, 10)


def test_what_is_no_basemap_of_the_street_is_refused(cli: Cli, tmp_path: Path, geo_settings: Settings) -> None:
    elsewhere = tmp_path / "wuhan.mbtiles"
    make_mbtiles(elsewhere, (114.2, 30.5, 114.3, 30.6), range(12, 13), (1, 2, 3))
    rc, _, err = cli("geodata", "basemap", elsewhere)
    assert rc == 2
    assert "covers lon 114.2000..114.3000" in err and "not the street" in err
    vector = tmp_path / "v.mbtiles"
    make_mbtiles(vector, street_bounds(), range(12, 13), (1, 2, 3))
    with sqlite3.connect(vector) as con:
        con.execute("UPDATE metadata SET value='pbf' WHERE name='format'")
    rc, _, err = cli("geodata", "basemap", vector)
    assert rc == 2 and "vector tile set (pbf)" in err
    empty = tmp_path / "e.mbtiles"
    make_mbtiles(empty, street_bounds(), range(0), (1, 2, 3))
    rc, _, err = cli("geodata", "basemap", empty)
    assert rc == 2 and "holds no tiles" in err
    other = tmp_path / "x.mbtiles"
    sqlite3.connect(other).execute("CREATE TABLE t (a)").connection.commit()
    rc, _, err = cli("geodata", "basemap", other)
    assert rc == 2 and "is no MBTiles tile set" in err
    assert not basemap_path(geo_settings).exists()
