"""The whole chain in real Chromium: devices publish → ingest → InfluxDB, alert engine → sc/alerts →
the dashboard's memory → the page; click-through to the alert, its compound and device with trends
drawn from InfluxDB; the stale banner when ingest dies and gone when it is back; the phone console.

Every page fails the test on a page error or a request leaving 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from core.contract import Device
from core.registry import write_registry
from core.settings import Settings
from dashboard.app import create_app
from dashboard.geo import MapData
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, MAP_IDLE_JS, external, free_port
from tests.ingest.conftest import ROOT, IngestProcess

pytestmark = pytest.mark.browser
STALE_HIDDEN = "() => { const e = document.querySelector('#stale'); return !!e && e.classList.contains('hidden'); }"
sync_api = pytest.importorskip("playwright.sync_api")


class Part:
    """`python -m smartcommunity <verb>` with the test's settings."""

    def __init__(self, settings: Settings, verb: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")} | settings.env()
        self.log = settings.data_path / f"{verb}-test.log"
        settings.data_path.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", verb], cwd=ROOT, env=env,
                                         stdout=f, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Fleet:
    """A few gas meters of one compound reporting every second (normal values until told otherwise)."""

    def __init__(self, settings: Settings, devices: list[Device]) -> None:
        self.devices = devices
        self.lel: dict[str, float] = {d.device_id: 2.0 for d in devices}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-{os.getpid()}")
        self.client.connect(settings.mqtt.host, settings.mqtt.port)
        self.client.loop_start()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_ev.wait(1.0):
            ts = int(time.time() * 1000)
            for d in self.devices:
                body = {"ts": ts, "m": {"lel_pct": self.lel[d.device_id], "co_ppm": 1.0, "pressure_kpa": 2.1,
                                        "valve_open": True}}
                self.client.publish(f"sc/{d.community}/gas/{d.device_id}/telemetry", orjson.dumps(body), qos=1)

    def close(self) -> None:
        self.stop_ev.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def live_site(settings: Settings) -> Iterator[tuple[str, Settings, dict[str, Any]]]:
    from waitress import create_server

    reg = MapData(settings).registry()
    compound = next(d.compound_id for d in reg.values() if d.kind == "gas" and d.community == "lanshanjun")
    gas = sorted((d for d in reg.values() if d.kind == "gas" and d.compound_id == compound),
                 key=lambda d: d.device_id)[:3]
    # A registry of just these three meters: the rest of the sample fleet would all fall silent here.
    small = settings.data_path / "small-registry.geojson"
    small.parent.mkdir(parents=True, exist_ok=True)
    write_registry(small, gas)
    s = Settings(**{**settings.__dict__, "alert_holdoff_s": 2.0, "dashboard_stale_s": 8.0,
                    "ingest_heartbeat_s": 0.5, "registry_file": str(small)})
    ingest = IngestProcess(s).start()
    ingest.wait_connected()
    engine = Part(s, "alerts")
    fleet = Fleet(s, gas)
    app = create_app(s)
    port = free_port()
    srv = create_server(app.server, host="127.0.0.1", port=port, threads=8)
    threading.Thread(target=srv.run, daemon=True).start()
    parts = {"ingest": ingest, "engine": engine, "fleet": fleet, "gas": gas, "compound": compound}
    try:
        yield f"http://127.0.0.1:{port}", s, parts
    finally:
        srv.close()
        fleet.close()
        engine.stop()
        parts["ingest"].stop()
        app.server.config["SC_DASHBOARD"].close()


def watch(page: Any, errors: list[str], requests: list[str]) -> None:
    """Page errors, and console errors (Dash reports a broken callback wiring there), fail the test."""
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))


def test_live_alarm_click_through_trends_and_stale_banner(live_site: tuple[str, Settings, dict[str, Any]]) -> None:
    url, s, parts = live_site
    fleet: Fleet = parts["fleet"]
    dev: Device = parts["gas"][0]
    errors: list[str] = []
    requests: list[str] = []
    timings: dict[str, float] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
        page = ctx.new_page()
        watch(page, errors, requests)
        page.goto(url + "/")
        page.wait_for_function(MAP_IDLE_JS, timeout=90_000)
        # Everything runs: no stale banner (it is judged from heartbeats and data age, not page lag).
        page.wait_for_function(STALE_HIDDEN, timeout=30_000)

        # A real alarm: the device reports 31 %LEL; the engine raises it; the page shows it live.
        fleet.lel[dev.device_id] = 31.0
        t0 = time.monotonic()
        item = page.wait_for_selector(f"#alert-list .sev-red >> text={dev.device_id}", timeout=30_000)
        timings["published_to_list"] = time.monotonic() - t0
        assert item is not None
        assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # no reload

        # Click-through: the alert's page, with the device's chart around it, drawn from InfluxDB.
        page.click("#alert-list .sev-red .alert-message")
        page.wait_for_selector("#alert-head", timeout=30_000)
        assert "燃气浓度" in page.inner_text("#alert-head")
        page.wait_for_selector("#trend-lel_pct .js-plotly-plot", timeout=30_000)
        # The alarm's own readings, from the time series: the chart follows new readings, so the ones
        # ingest wrote a moment after the engine raised the alert appear without a reload.
        page.wait_for_function("() => { const g = document.querySelector('#trend-lel_pct .js-plotly-plot');"
                               " const t = g && g.data.filter(t => t.name === '可燃气体浓度')[0];"
                               " return !!(t && t.y.length && Math.max(...t.y) >= 25); }", timeout=30_000)

        # ... its compound: devices, open alert, units, trends.
        page.click("#alert-head a[href^='/compounds/']")
        page.wait_for_selector(".compound-page", timeout=30_000)
        body = page.inner_text(".compound-page")
        assert dev.device_id in body and "燃气浓度" in body
        page.wait_for_selector("#cmp-trends .js-plotly-plot", timeout=30_000)
        n = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('#cmp-trends .js-plotly-plot'))"
                          ".map(g => Math.max(...g.data.map(t => (t.y || []).length))))")
        assert n > 0

        # ... and the device: online, latest values, trend with points.
        page.click(f".compound-page a[href='/devices/{dev.device_id}']")
        page.wait_for_selector(".device-page", timeout=30_000)
        assert "在线" in page.inner_text(".device-page .alert-title-row")
        page.wait_for_selector(".device-page .js-plotly-plot", timeout=30_000)
        pts = page.evaluate("() => document.querySelector('.device-page .js-plotly-plot').data"
                            ".map(t => (t.y || []).length)")
        assert max(pts) > 0
        assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # pages, no reloads

        # The stale banner: ingest dies (no heartbeat) → it shows; ingest back → it goes.
        page.click("a.nav-link[href='/']")
        page.wait_for_selector("#onemap", timeout=30_000)
        parts["ingest"].kill9()
        t1 = time.monotonic()
        page.wait_for_function(f"() => !({STALE_HIDDEN})()", timeout=40_000)
        timings["ingest_killed_to_banner"] = time.monotonic() - t1
        # Data age may trip first ("N 秒无新数据"); the missing ingest heartbeat must be named soon after.
        page.wait_for_function("() => document.querySelector('#stale').innerText.includes('接入服务')",
                               timeout=40_000)
        assert "接入服务" in page.inner_text("#stale")
        ingest = IngestProcess(s).start()
        parts["ingest"] = ingest
        ingest.wait_connected()
        t2 = time.monotonic()
        page.wait_for_function(STALE_HIDDEN, timeout=40_000)
        timings["ingest_back_to_no_banner"] = time.monotonic() - t2
        browser.close()
    assert errors == [], errors
    assert external(requests) == [], external(requests)
    print("timings", {k: round(v, 2) for k, v in timings.items()})


def test_phone_console_and_wall_sizes(tmp_path: Path) -> None:
    """390 × 844: the list first, buttons ≥ 44 px and uncovered, the map behind a tab, nothing sideways.
    1920 × 1080 wall: no text under 18 px, the tiles labelled."""
    from waitress import create_server

    from alerts.store import AlertStore, store_path
    from tests.conftest import RunningAlerts, make_settings
    from tests.dashboard.test_dash_browser import red_alert

    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    service = RunningAlerts(s, broker=False)  # the console's 确认 is a command to it
    service.__enter__()
    app = create_app(s)
    port = free_port()
    srv = create_server(app.server, host="127.0.0.1", port=port, threads=6)
    threading.Thread(target=srv.run, daemon=True).start()
    store = AlertStore(store_path(s.data_path))
    alert = red_alert(store, s)
    errors: list[str] = []
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True, locale="zh-CN")
            page = phone.new_page()
            watch(page, errors, requests)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(f"#alert-list >> text={alert.message}", timeout=60_000)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scroll
            assert not page.is_visible("#onemap")  # the map waits behind its tab
            title = page.locator(".topbar h1").bounding_box()
            assert title is not None and title["height"] < 40  # one line, not a character a line
            for sel in (".btn-ack", ".btn-resolve", "#tab-map", "#tab-list"):
                box = page.locator(sel).first.bounding_box()
                assert box is not None and box["height"] >= 44 and box["width"] >= 44, (sel, box)
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
            # Nothing covers the acknowledge button: the element at its centre is the button.
            on_top = page.evaluate("""() => { const b = document.querySelector('.btn-ack').getBoundingClientRect();
                const e = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
                return e && e.classList.contains('btn-ack'); }""")
            assert on_top
            page.screenshot(path="/tmp/dash_phone.png")
            page.click("#tab-map")
            page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
            assert page.is_visible("#onemap") and not page.is_visible(".btn-ack")
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            page.click("#tab-list")
            page.click(".btn-ack")
            page.wait_for_selector("#alert-list .state-acknowledged", timeout=30_000)

            wall = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN").new_page()
            watch(wall, errors, requests)
            wall.goto(f"http://127.0.0.1:{port}/wall")
            wall.wait_for_selector(f"#wall-list >> text={alert.message}", timeout=60_000)
            small = wall.evaluate("""() => Array.from(document.querySelectorAll('body *')).filter(e =>
                e.offsetParent !== null && e.childNodes.length && Array.from(e.childNodes).some(n =>
                n.nodeType === 3 && n.textContent.trim()) && !e.closest('#onemap') &&
                parseFloat(getComputedStyle(e).fontSize) < 18).map(e => e.className + ':' + e.textContent.trim()
                .slice(0, 20))""")
            assert small == [], small
            tiles = wall.inner_text("#wall-tiles")
            for label in ("未处置", "已确认", "离线"):
                assert tiles.count(label) == 4
            browser.close()
    finally:
        store.close()
        srv.close()
        app.server.config["SC_DASHBOARD"].close()
        service.__exit__()
    assert errors == [], errors
    assert external(requests) == [], external(requests)
