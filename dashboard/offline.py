"""The map's local MapLibre style: no tiles, and a glyph URL on this server that always 404s.

A style that names no glyph server makes plotly fall back to one on the internet; with a local URL
that 404s, MapLibre draws every label with the browser's own fonts (fonts-noto-cjk) instead.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

from dashboard.theme import BG

STYLE_PATH = "/map/style.json"
GLYPHS_PATH = "/map/glyphs"


def style_doc(base_url: str) -> dict[str, object]:
    base = base_url.rstrip("/")
    return {
        "version": 8,
        "name": "smartcommunity-offline",
        "sources": {},
        "glyphs": f"{base}{GLYPHS_PATH}/{{fontstack}}/{{range}}.pbf",
        "layers": [{"id": "bg", "type": "background", "paint": {"background-color": BG}}],
    }


def style_url(base_url: str) -> str:
    return base_url.rstrip("/") + STYLE_PATH


def register_offline_routes(server: Flask) -> None:
    @server.get(STYLE_PATH)
    def map_style() -> Response:
        resp = jsonify(style_doc(request.host_url))
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @server.get(f"{GLYPHS_PATH}/<path:_rest>")
    def map_glyphs(_rest: str) -> tuple[str, int]:
        return "", 404
