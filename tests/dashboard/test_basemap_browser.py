"""The street's own basemap in real Chromium: a raster MBTiles made here is installed, its tiles come from the
dashboard itself (with HTTP caching), it lies under the drawn layers, and the 底图 toggle switches it.
Screenshot: /tmp/dash_basemap.png."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import shapely
from PIL import Image

from core.settings import Settings
from dashboard.offline import BASEMAP_LAYER, BASEMAP_PATH, TILE_MAX_AGE_S
from geodata.basemap import install
from geodata.layers import load_bundled_layers
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, MAP_IDLE_JS, screen_xy, served, served_with_alerts  # noqa: F401
from tests.geodata.test_geodata_basemap import make_mbtiles, street_bounds, tile_xy

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

COLOUR = (200, 30, 160)  # in no theme colour: a pixel of it is the basemap showing
GD = "document.querySelector('#onemap .js-plotly-plot')"
TINT = f"() => {GD}.layout.map.layers[0].opacity"
TINTED = f"() => ({TINT})() === {GD}.layout.meta.tint[1]"  # the community tints lightened over the basemap
TILES_DONE = f"""() => {{ const m = {GD}._fullLayout.map._subplot.map;
    return m.getLayer('{BASEMAP_LAYER}') && m.isSourceLoaded('{BASEMAP_LAYER}') && m.areTilesLoaded(); }}"""


def basemap_pixels(img: Image.Image) -> float:
    """Share of the image's pixels that are the basemap's colour."""
    px = np.asarray(img.convert("RGB"), dtype=np.int16).reshape(-1, 3)
    return float((np.abs(px - np.array(COLOUR)) < 8).all(axis=1).mean())


def tinted_share(page: Any, img: Image.Image) -> float:
    """Share of a grid of points inside the communities where the basemap's colour shows through the tint."""
    comm = shapely.union_all(load_bundled_layers().communities.geometry.values)
    w, s, e, n = comm.bounds
    pts = [[w + (e - w) * i / 40, s + (n - s) * j / 40] for i in range(41) for j in range(41)
           if comm.contains(shapely.Point(w + (e - w) * i / 40, s + (n - s) * j / 40))]
    box = page.locator("#onemap .maplibregl-canvas").bounding_box()
    xy = page.evaluate(f"""(pts) => {{ const m = {GD}._fullLayout.map._subplot.map;
        return pts.map(ll => {{ const p = m.project(ll); return [p.x, p.y]; }}); }}""", pts)
    px = [img.getpixel((int(x), int(y))) for x, y in xy if 0 <= x < box["width"] and 0 <= y < box["height"]]
    return sum(1 for r, g, b in px if r - g > 50 and b - g > 30) / len(px)


def map_shot(page: Any) -> Image.Image:
    box = page.locator("#onemap .maplibregl-canvas").bounding_box()
    return Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")


def test_own_basemap_served_cached_under_the_layers_and_switchable(
    served: tuple[str, Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    base_url, settings = served
    src = tmp_path / "ortho.mbtiles"
    make_mbtiles(src, street_bounds(), range(10, 18), COLOUR)
    install(src, settings)

    # Served here, cached by the browser, revalidated by ETag; nothing for tiles the set lacks.
    style = requests.get(f"{base_url}/map/style.json", timeout=10).json()
    assert [ly["id"] for ly in style["layers"]][:2] == ["bg", BASEMAP_LAYER]  # under everything drawn
    url = style["sources"][BASEMAP_LAYER]["tiles"][0]
    assert url.startswith(f"{base_url}{BASEMAP_PATH}/")
    lon, lat = (float(v) for v in load_bundled_layers().compounds.geometry.values[0].representative_point().coords[0])
    x, y = tile_xy(lon, lat, 15)
    r = requests.get(url.replace("{z}", "15").replace("{x}", str(x)).replace("{y}", str(y)), timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert r.headers["Cache-Control"] == f"public, max-age={TILE_MAX_AGE_S}"
    assert Image.open(io.BytesIO(r.content)).convert("RGB").getpixel((3, 3)) == COLOUR
    again = requests.get(r.url, headers={"If-None-Match": r.headers["ETag"]}, timeout=10)
    assert again.status_code == 304 and not again.content
    assert requests.get(f"{base_url}{BASEMAP_PATH}/15/{x + 500}/{y}.png", timeout=10).status_code == 404

    seen: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN").new_page()
        page.on("request", lambda rq: seen.append(rq.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base_url + "/")
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_function(TINTED, timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_function(TILES_DONE, timeout=60_000)
        page.wait_for_timeout(500)
        shot = map_shot(page)
        shot.save("/tmp/dash_basemap.png")
        assert basemap_pixels(shot) > 0.2
        assert tinted_share(page, shot) > 0.4  # inside the street it shows through the community tints
        # The drawn layers lie above it: where a compound is, its fill covers the basemap's colour.
        box = page.locator("#onemap .maplibregl-canvas").bounding_box()
        cx, cy = screen_xy(page, [lon, lat])
        assert shot.getpixel((int(cx - box["x"]), int(cy - box["y"]))) != COLOUR
        tiles = [u for u in seen if BASEMAP_PATH + "/" in u]
        assert tiles and all(u.startswith(base_url) for u in tiles)
        assert not [u for u in seen if not u.startswith((base_url, "data:", "blob:"))]

        # Unticked, the basemap goes (the drawn layers stay); ticked again, it comes back.
        page.click(".layer-panel summary")
        page.click(".layer-item:has-text('底图')")
        hidden = f"() => {GD}._fullLayout.map._subplot.map.getLayoutProperty('{BASEMAP_LAYER}', 'visibility') == 'none'"
        page.wait_for_function(hidden, timeout=15_000)
        page.wait_for_function(f"() => !({TINTED})()", timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_timeout(500)
        off = map_shot(page)
        assert basemap_pixels(off) == 0
        assert tinted_share(page, off) < 0.05
        assert off.getpixel((int(cx - box["x"]), int(cy - box["y"]))) != shot.getpixel((0, 0))  # layers still drawn
        page.click(".layer-item:has-text('底图')")
        page.wait_for_function(f"() => !({hidden})()", timeout=15_000)
        page.wait_for_function(TINTED, timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_function(TILES_DONE, timeout=60_000)
        page.wait_for_timeout(500)
        back = map_shot(page)
        assert basemap_pixels(back) > 0.2 and tinted_share(page, back) > 0.4
        browser.close()
    assert errors == [], errors
