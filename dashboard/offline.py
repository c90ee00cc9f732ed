"""The map's local MapLibre style: no tiles, no glyph server, labels drawn with local fonts.

A style that names no glyph server makes plotly fall back to one on the internet, so it names one on
this server that always 404s. Chinese is drawn by MapLibre from the browser's own fonts
(fonts-noto-cjk) without asking for glyphs; Latin letters and digits (a cluster's count, "3号楼") would
be asked for, so the style declares a font face for them ("font-faces", drawn locally by MapLibre)
from a font file of this machine, served here. Without such a file MapLibre still draws them locally
after the 404, with a console message.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_file

from dashboard.theme import BG

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
# The font stacks plotly asks MapLibre for (trace text, cluster counts, symbol layers).
FONT_STACKS = ("Open Sans Regular", "Open Sans Bold", "Open Sans Semibold", "Arial Unicode MS Regular",
               "Arial Unicode MS Bold", "Noto Sans Regular")
LATIN_RANGES = ["U+0000-024F", "U+2000-206F", "U+20A0-20CF", "U+2100-214F"]


def latin_font() -> Path | None:
    return next((Path(f) for f in LATIN_FONTS if Path(f).is_file()), None)


def style_doc(base_url: str) -> dict[str, object]:
    base = base_url.rstrip("/")
    doc: dict[str, object] = {
        "version": 8,
        "name": "smartcommunity-offline",
        "sources": {},
        "glyphs": f"{base}{GLYPHS_PATH}/{{fontstack}}/{{range}}.pbf",
        "layers": [{"id": "bg", "type": "background", "paint": {"background-color": BG}}],
    }
    if latin_font() is not None:
        face = [{"url": f"{base}{FONT_PATH}", "unicode-range": LATIN_RANGES}]
        doc["font-faces"] = dict.fromkeys(FONT_STACKS, face)
    return doc


def style_url(base_url: str) -> str:
    return base_url.rstrip("/") + STYLE_PATH


def register_offline_routes(server: Flask) -> None:
    @server.get(STYLE_PATH)
    def map_style() -> Response:
        resp = jsonify(style_doc(request.host_url))
        resp.headers["Cache-Control"] = "no-cache"
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
