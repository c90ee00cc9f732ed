"""The map's local MapLibre style (no tiles, no glyph server, labels drawn with local fonts) and the
plotly.js the pages load, both from this server.

A style that names no glyph server makes plotly fall back to one on the internet, so it names one on
this server that always 404s. Chinese is drawn by MapLibre from the browser's own fonts
(fonts-noto-cjk) without asking for glyphs; Latin letters and digits (a cluster's count, "3号楼") would
be asked for, so the style declares a font face for them ("font-faces", drawn locally by MapLibre)
from a font file of this machine, served here. Without such a file MapLibre still draws them locally
after the 404, with a console message.

The street's own basemap (geodata/basemap.py: a raster MBTiles the survey office's orthophoto was cut
into), when one is installed, is the style's first layer above the background: every drawn layer lies
above it. Its tiles come from this server only (BASEMAP_PATH), cached by the browser for a day; the tile
URL carries the tile set's version, so a new basemap is fetched at once.

plotly.js: when scripts/bootstrap.sh has built the partial bundle (dashboard/plotlyjs: plotly's core and
the MapLibre traces, about 60 % of the whole) it is served where Dash's graphs fetch plotly.js, so the
one map draws sooner; otherwise Dash serves plotly's whole bundle there as usual. Either way the page
head preloads it, so its download does not wait for the page's layout.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, jsonify, request, send_file

from dashboard.theme import BG

if TYPE_CHECKING:
    from geodata.basemap import TileReader, TileSet

STYLE_PATH = "/map/style.json"
GLYPHS_PATH = "/map/glyphs"
FONT_PATH = "/map/font/latin.ttf"
# Debian's own Latin fonts (chromium pulls in Liberation; DejaVu is in most installs); first found wins.
LATIN_FONTS = (
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
)
PLOTLY_PATH = "/_dash-component-suites/plotly/package_data/plotly.min.js"  # where dcc.Graph loads it from
PARTIAL_PLOTLY = Path(__file__).resolve().parents[1] / "build" / "vendor" / "plotly-map.min.js"
# The font stacks plotly asks MapLibre for (trace text, cluster counts, symbol layers).
FONT_STACKS = ("Open Sans Regular", "Open Sans Bold", "Open Sans Semibold", "Arial Unicode MS Regular",
               "Arial Unicode MS Bold", "Noto Sans Regular")
LATIN_RANGES = ["U+0000-024F", "U+2000-206F", "U+20A0-20CF", "U+2100-214F"]
BASEMAP_PATH = "/basemap"
BASEMAP_LAYER = "sc-basemap"  # assets/clientside.js switches it by this id
TILE_MAX_AGE_S = 86_400


def latin_font() -> Path | None:
    return next((Path(f) for f in LATIN_FONTS if Path(f).is_file()), None)


def style_doc(base_url: str, tiles: TileSet | None = None) -> dict[str, object]:
    base = base_url.rstrip("/")
    layers: list[dict[str, object]] = [{"id": "bg", "type": "background", "paint": {"background-color": BG}}]
    sources: dict[str, object] = {}
    if tiles is not None:
        sources[BASEMAP_LAYER] = {
            "type": "raster", "tileSize": 256, "minzoom": tiles.minzoom, "maxzoom": tiles.maxzoom,
            "bounds": list(tiles.bounds),  # no requests for tiles the set does not have
            "tiles": [f"{base}{BASEMAP_PATH}/{{z}}/{{x}}/{{y}}.{tiles.format}?v={tiles.version}"],
        }
        layers.append({"id": BASEMAP_LAYER, "type": "raster", "source": BASEMAP_LAYER})
    doc: dict[str, object] = {
        "version": 8,
        "name": "smartcommunity-offline",
        "sources": sources,
        "glyphs": f"{base}{GLYPHS_PATH}/{{fontstack}}/{{range}}.pbf",
        "layers": layers,
    }
    if latin_font() is not None:
        face = [{"url": f"{base}{FONT_PATH}", "unicode-range": LATIN_RANGES}]
        doc["font-faces"] = dict.fromkeys(FONT_STACKS, face)
    return doc


def style_url(base_url: str) -> str:
    return base_url.rstrip("/") + STYLE_PATH


def register_offline_routes(server: Flask, basemap: TileReader | None = None) -> None:
    @server.get(STYLE_PATH)
    def map_style() -> Response:
        resp = jsonify(style_doc(request.host_url, basemap.current() if basemap else None))
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @server.get(f"{BASEMAP_PATH}/<int:z>/<int:x>/<int:y>.<ext>")
    def basemap_tile(z: int, x: int, y: int, ext: str) -> Response:
        ts = basemap.current() if basemap else None
        data = basemap.tile(z, x, y) if ts is not None and basemap is not None else None
        if ts is None or data is None or ext != ts.format:
            abort(404)
        etag = f"{ts.version}-{z}-{x}-{y}"
        fresh = request.if_none_match.contains(etag)
        resp = Response(status=304) if fresh else Response(data, mimetype=ts.mimetype)
        resp.set_etag(etag)
        resp.headers["Cache-Control"] = f"public, max-age={TILE_MAX_AGE_S}"
        return resp

    @server.get(FONT_PATH)
    def map_font() -> Response:
        font = latin_font()
        if font is None:
            abort(404)
        return send_file(font, mimetype="font/ttf", max_age=86_400)

    @server.get(f"{GLYPHS_PATH}/<path:_rest>")
    def map_glyphs(_rest: str) -> tuple[str, int]:
        return "", 404


class _Bundle:
    """A JavaScript file read and gzipped once, served with an ETag (revalidated, never stale)."""

    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()
        self.raw, self.gz = raw, gzip.compress(raw, 9)
        self.etag = hashlib.sha256(raw).hexdigest()[:20]

    def response(self) -> Response:
        if request.if_none_match.contains(self.etag):
            resp = Response(status=304)
        elif "gzip" in (request.headers.get("Accept-Encoding") or ""):
            resp = Response(self.gz, mimetype="text/javascript")
            resp.headers["Content-Encoding"] = "gzip"
        else:
            resp = Response(self.raw, mimetype="text/javascript")
        resp.set_etag(self.etag)
        resp.headers["Vary"] = "Accept-Encoding"
        resp.headers["Cache-Control"] = "no-cache"
        return resp


def register_plotly(app: Any, partial: Path = PARTIAL_PLOTLY) -> bool:
    """Serve the partial plotly.js at PLOTLY_PATH when it was built; preload plotly.js from the page head.
    True when the partial bundle is served."""
    link = f'<link rel="preload" href="{PLOTLY_PATH}" as="script">'
    if link not in app.index_string:
        app.index_string = app.index_string.replace("{%css%}", link + "{%css%}", 1)
    if not partial.is_file():
        return False
    bundle = _Bundle(partial)
    # A static rule: Werkzeug matches it before Dash's /_dash-component-suites/<package>/<path> rule.
    app.server.add_url_rule(PLOTLY_PATH, "sc_plotly_partial", bundle.response)
    return True
