"""The one map in real Chromium: it draws offline, shows the four communities, and live alerts
appear (and can be acknowledged) without a reload. Screenshots go to /tmp/dash_*.png."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from alerts.store import AlertStore, store_path
from core.contract import COMMUNITIES, Alert
from core.settings import Settings
from dashboard.app import create_app
from dashboard.mapfig import CODE_COLOR, T_COMPOUNDS, T_DEVICES
from tests.conftest import RunningAlerts, make_settings

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAP_IDLE_JS = """() => { const gd = document.querySelector('#onemap .js-plotly-plot');
  const sp = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
  return !!(sp && sp.map && sp.map.loaded()); }"""


def drawn_js(layer: str) -> str:
    """JS giving the features MapLibre has drawn in one of the live layers (what is on screen, not the data)."""
    return f"""() => {{ const g = document.querySelector('#onemap .js-plotly-plot');
      const m = g && g._fullLayout && g._fullLayout.map && g._fullLayout.map._subplot.map;
      if (!m || !m.getLayer('{layer}')) return [];
      return m.queryRenderedFeatures({{layers: ['{layer}']}}).map(f => f.properties); }}"""


def screen_xy(page: Any, lonlat: list[float]) -> list[float]:
    return page.evaluate("""(ll) => { const g = document.querySelector('#onemap .js-plotly-plot');
        const m = g._fullLayout.map._subplot.map, p = m.project(ll), r = m.getCanvas().getBoundingClientRect();
        return [p.x + r.left, p.y + r.top]; }""", lonlat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_with_alerts(tmp_path: Path) -> Iterator[tuple[str, Settings, Any]]:
    """The dashboard served over waitress beside a real alert service (no broker): (url, settings, service)."""
    from waitress import create_server

    s = make_settings(
        tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9", dashboard_refresh_ms=1000
    )
    with RunningAlerts(s, broker=False) as svc:  # the dashboard's actions are commands to it
        app = create_app(s)
        port = free_port()
        srv = create_server(app.server, host="127.0.0.1", port=port, threads=6)
        th = threading.Thread(target=srv.run, daemon=True)
        th.start()
        yield f"http://127.0.0.1:{port}", s, svc
        srv.close()
        app.server.config["SC_DASHBOARD"].close()


@pytest.fixture
def served(served_with_alerts: tuple[str, Settings, Any]) -> tuple[str, Settings]:
    return served_with_alerts[0], served_with_alerts[1]


def red_alert(store: AlertStore, settings: Settings, offset: float | None = None) -> Alert:
    """A gas alert on a real registry device in 蓝山郡, placed (no lon/lat) by its device, or `offset`
    degrees east of it."""
    from core.registry import ensure_registry, load_registry

    dev = next(d for d in load_registry(ensure_registry(settings)).values() if d.community == "lanshanjun")
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    a = Alert(
        f"a-{uuid.uuid4().hex[:12]}",
        "gas_lel_high",
        "red",
        "active",
        dev.community,
        dev.compound_id,
        dev.device_id,
        "gas",
        "lel_pct",
        31.0,
        25.0,
        None if offset is None else dev.lon + offset,
        None if offset is None else dev.lat,
        now,
        now,
        "燃气浓度 31.0 %LEL ≥ 25 %LEL",
    )
    store.insert(a, dev.device_id)
    return a


def wait_with(page: Any, pred: Any, timeout: float = 10) -> bool:
    """Poll `pred` while letting Playwright dispatch page events (time.sleep would block them)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(100)
    return True


def external(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(("http://127.0.0.1", "data:", "blob:http://127.0.0.1"))]


def test_one_map_offline_live(served: tuple[str, Settings], tmp_path: Path) -> None:
    base_url, settings = served
    net_log = tmp_path / "net.json"
    store = AlertStore(store_path(settings.data_path))  # a second writer, like the alert engine
    requests: list[str] = []
    errors: list[str] = []
    timings: dict[str, float] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--log-net-log={net_log}"])
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
        page = ctx.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        t0 = time.monotonic()
        page.goto(base_url + "/")
        page.wait_for_selector("#onemap .maplibregl-canvas", timeout=60_000)
        timings["canvas"] = time.monotonic() - t0
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        timings["map_loaded"] = time.monotonic() - t0

        body = page.inner_text("body")
        for name in COMMUNITIES.values():
            assert name in body
        labels = page.evaluate("() => document.querySelector('#onemap .js-plotly-plot').data.slice(-1)[0].text")
        assert sorted(labels) == sorted(COMMUNITIES.values())  # the map's own labels, drawn last
        assert "当前无未解除告警" in body
        page.screenshot(path="/tmp/dash_quiet.png")

        # Layer toggles: "alerts only" hides compounds, units, shops and devices; unticked, they come back.
        vis = f"() => document.querySelector('#onemap .js-plotly-plot').data.slice({T_COMPOUNDS}, {T_DEVICES} + 1)" \
              ".map(t => t.visible)"
        page.click(".layer-panel summary")
        page.click(".layer-item:has-text('仅告警')")
        page.wait_for_function(f"() => ({vis})().every(v => v === false)", timeout=15_000)
        page.click(".layer-item:has-text('仅告警')")
        page.wait_for_function(f"() => ({vis})().every(v => v === true)", timeout=15_000)
        page.click(".layer-panel summary")

        alert = red_alert(store, settings)
        t1 = time.monotonic()
        page.wait_for_selector(f"text={alert.message}", timeout=15_000)
        timings["alert_in_list"] = time.monotonic() - t1
        page.wait_for_function(f"() => ({drawn_js('sc-halo')})().length === 1", timeout=15_000)
        core = page.evaluate(drawn_js("sc-core"))
        assert [(c["a"], c["href"]) for c in core] == [(1, f"/alerts/{alert.alert_id}")]
        risk = page.evaluate(drawn_js("sc-risk"))
        assert risk and {r["c"] for r in risk} == {CODE_COLOR[4]}  # the compound turned red
        timings["alert_on_map"] = time.monotonic() - t1
        assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # no reload
        page.wait_for_timeout(2000)
        page.screenshot(path="/tmp/dash_alert.png")

        page.fill("#action-note", "已派人到场")
        page.click(".btn-ack")
        assert wait_with(page, lambda: store.get(alert.alert_id).state == "acknowledged")  # type: ignore[union-attr]
        assert store.get(alert.alert_id).acked_by == "值班员"  # type: ignore[union-attr]
        assert store.get(alert.alert_id).note == "已派人到场"  # type: ignore[union-attr]
        assert wait_with(page, lambda: page.input_value("#action-note") == "")  # cleared for the next one

        wall = ctx.new_page()
        wall.on("request", lambda r: requests.append(r.url))
        wall.on("pageerror", lambda e: errors.append(str(e)))
        wall.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        wall.goto(base_url + "/wall")
        wall.wait_for_selector(f"#wall-list >> text={alert.message}", timeout=30_000)
        assert "已确认" in wall.inner_text("#wall-tiles")
        wall.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        assert wall.locator(".btn-ack:visible, .btn-resolve:visible").count() == 0
        wall.screenshot(path="/tmp/dash_wall.png")
        wall.close()

        # Resolve asks for confirmation first (a browser confirm dialog), then clears the list.
        page.on("dialog", lambda d: d.accept())
        page.click(".btn-resolve")
        assert wait_with(page, lambda: store.get(alert.alert_id).state == "resolved")  # type: ignore[union-attr]
        page.wait_for_selector("text=当前无未解除告警", timeout=15_000)
        # Resolved, it stays on the map a while, faded, and a click on it opens the alert's page.
        page.wait_for_function(f"() => ({drawn_js('sc-resolved')})().length === 1", timeout=30_000)
        assert page.evaluate(f"() => ({drawn_js('sc-core')})().length") == 0
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        xy = screen_xy(page, page.evaluate("() => window.scLive.resolved[0].slice(0, 2)"))
        page.mouse.move(xy[0], xy[1])
        page.wait_for_selector("#sc-tip >> text=已解除", timeout=10_000)  # the hover label says who/what cleared it
        assert "值班员 解除" in page.inner_text("#sc-tip")
        page.mouse.click(xy[0], xy[1])
        page.wait_for_url(f"**/alerts/{alert.alert_id}", timeout=30_000)
        page.wait_for_selector("#alert-head", timeout=30_000)
        assert "已解除" in page.inner_text("#alert-head")
        browser.close()
    store.close()

    assert external(requests) == [], external(requests)
    assert errors == [], errors
    logged = net_log.read_text(errors="replace")
    try:  # Chromium may leave the JSON unterminated; the URLs are what matter
        urls = [u for u in (e.get("params", {}).get("url") for e in json.loads(logged)["events"]) if u]
    except ValueError:
        urls = [seg.split('"', 1)[0] for seg in logged.split('"url":"')[1:]]
    offenders = [
        u
        for u in external(urls)
        if any(h in u for h in ("openmaptiles", "jsdelivr", "unpkg", "plot.ly", "mapbox", "carto", "openstreetmap"))
    ]
    assert offenders == []
    print("timings", {k: round(v, 2) for k, v in timings.items()})


GD = "document.querySelector('#onemap .js-plotly-plot')"


def test_devices_clustered_kinds_filtered_and_state_on_top(served: tuple[str, Settings]) -> None:
    """Overlapping devices are bubbles with counts at district zoom (a click zooms in), a device in alert
    is drawn singly on top of them and opens its page, and unticking a kind takes its devices out of
    the bubbles' counts, not only out of sight."""
    base_url, settings = served
    store = AlertStore(store_path(settings.data_path))
    alert = red_alert(store, settings, offset=0.0006)  # its dot ~55 m east of the device's
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base_url + "/")
        page.wait_for_function(f"() => ({drawn_js('sc-devstate')})().length === 1", timeout=60_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        total = page.evaluate(f"() => {GD}.data[{T_DEVICES}].lon.length")
        clusters_js = f"""() => {{ const m = {GD}._fullLayout.map._subplot.map;
            const ids = m.getStyle().layers.map(l => l.id).filter(id => /-cluster$/.test(id));
            return m.queryRenderedFeatures({{layers: ids}}).map(f => [f.properties.point_count,
                f.geometry.coordinates]); }}"""
        clusters = page.evaluate(clusters_js)
        assert len(clusters) > 20 and sum(c[0] for c in clusters) > total * 0.8  # most devices are in bubbles
        # The live layers are drawn above plotly's traces (a red dot never under a bubble).
        order = page.evaluate(f"() => {GD}._fullLayout.map._subplot.map.getStyle().layers.map(l => l.id)")
        assert order[-5:] == ["sc-devstate", "sc-resolved", "sc-halo", "sc-core", "sc-count"]
        # A click on a bubble zooms in on it.
        zoom0 = page.evaluate(f"() => {GD}._fullLayout.map._subplot.map.getZoom()")
        biggest = max(clusters, key=lambda c: c[0])
        xy = screen_xy(page, biggest[1])
        page.mouse.click(xy[0], xy[1])
        page.wait_for_function(f"() => {GD}._fullLayout.map._subplot.map.getZoom() > {zoom0} + 1.5", timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        # Plotly saw the same click on a device of the bubble; it is known to be taken, so however late
        # the page callback runs (seconds, on a busy wall machine) it does not open that device's page.
        assert page.evaluate("() => window._scPlotlyTaken") is True
        assert urlparse(page.url).path == "/"
        # Unticking 燃气: no gas device left in the trace or the bubbles; ticking it back restores all.
        page.click(".layer-panel summary")
        page.click(".layer-item:has-text('燃气')")
        page.wait_for_function(f"() => {GD}.data[{T_DEVICES}].customdata.every(c => c[1] !== '燃气')", timeout=15_000)
        left = page.evaluate(f"() => {GD}.data[{T_DEVICES}].lon.length")
        assert 0 < left < total
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)  # plotly re-plotted the map: the zoom stays
        assert page.evaluate(f"() => {GD}._fullLayout.map._subplot.map.getZoom()") > zoom0 + 1.5
        page.wait_for_function(f"() => ({drawn_js('sc-devstate')})().length === 0", timeout=15_000)  # it was gas
        page.click(".layer-item:has-text('燃气')")
        page.wait_for_function(f"() => {GD}.data[{T_DEVICES}].lon.length === {total}", timeout=15_000)
        page.click(".layer-panel summary")
        # The device in alert, drawn on top, opens its page.
        page.evaluate(f"""() => {{ const m = {GD}._fullLayout.map._subplot.map, r = window.scLive.devices[0];
            m.jumpTo({{center: [r[0], r[1]], zoom: 17.5}}); }}""")
        page.wait_for_function(f"() => ({drawn_js('sc-devstate')})().length === 1", timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        xy = screen_xy(page, page.evaluate("() => window.scLive.devices[0].slice(0, 2)"))
        page.mouse.move(xy[0], xy[1])
        page.wait_for_selector(f"#sc-tip >> text={alert.device_id}", timeout=10_000)
        page.mouse.click(xy[0], xy[1])
        page.wait_for_url(f"**/devices/{alert.device_id}", timeout=30_000)
        browser.close()
    store.close()
    assert external(requests) == [], external(requests)
    assert errors == [], errors
