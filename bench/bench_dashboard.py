"""Dashboard figures (issue #11). Plain script: `python bench/bench_dashboard.py [--devices 100000]`.

Prints, never asserts:
- refresh server time with a 100,000-device registry: an unchanged tick, and a tick after one new alert
  (the HTTP callback through Flask, and the live view + Patch alone), goal < 50 ms;
- Patch bytes of that tick; figure JSON size (sample registry and 100k), goal < 1 MB;
- first load of `/` (bytes transferred, compressed), goal < 3 MB; first map draw, goal < 2 s (sample),
  < 4 s with 10,000 devices (figure JSON of that registry too);
- click → state: 确认 on the console → 已确认 on the same page (goal < 1 s) and on an open wall (goal < 2 s);
  a new alert in the store → on the page.
Headless Chromium with software WebGL on this machine; the load average is printed with the figures.

The stack figures (`--stack`, run first by default), from one run against a real started stack
(Mosquitto, InfluxDB, `smartcommunity alerts`, `smartcommunity dashboard`, each its own process,
signed in as a deployment is: an operator's bearer token for /api, a wall display link):
- ack → wall: /wall open, an open alert acknowledged through `POST /api/alerts/{id}/ack`, until the
  wall lists it as acknowledged (median, max), goal ≤ 2 s;
- alert → map: / open, a gas reading over the danger line published over MQTT, until its alert's dot
  is drawn on the map (from the publication and from the alert's `started_at`), goal ≤ 2 s;
- first draw: / until the map is drawn with all its layers, against bench/bare_map.html drawing the
  same GeoJSON with MapLibre alone (the version plotly.js bundles, fetched from npm into build/vendor
  by scripts/bootstrap.sh) in the same browser, as a ratio, goal ≤ 1.5×.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DRAWN_JS = """() => { const g = document.querySelector('#onemap .js-plotly-plot');
  const m = g && g._fullLayout && g._fullLayout.map && g._fullLayout.map._subplot.map;
  return !!(m && m.getLayer('sc-core') && m.queryRenderedFeatures({layers: ['sc-core']}).length > 0); }"""
MAP_IDLE_JS = """() => { const gd = document.querySelector('#onemap .js-plotly-plot');
  const sp = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
  return !!(sp && sp.map && sp.map.loaded()); }"""


def settings_for(data: Path, registry: Path | None = None) -> Any:
    from core.settings import load_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    over: dict[str, Any] = {"data_dir": str(data), "mqtt_url": "mqtt://127.0.0.1:9", "influx_url": "http://127.0.0.1:9"}
    if registry is not None:
        over["registry_file"] = str(registry)
    return load_settings(env, **over)


def an_alert(dev: Any, severity: str = "red") -> Any:
    from core.contract import Alert
    from core.timebase import now_iso

    now = now_iso()
    return Alert(f"a-{uuid.uuid4().hex[:12]}", "gas_lel_high", severity, "active", dev.community, dev.compound_id,
                 dev.device_id, dev.kind, "lel_pct", 31.0, 25.0, None, None, now, now, "燃气浓度 31.0 %LEL ≥ 25 %LEL")


def map_body(sig: dict[str, Any]) -> dict[str, Any]:
    return {"output": "..onemap.figure...map-live.data...map-sig.data..",
            "outputs": [{"id": "onemap", "property": "figure"}, {"id": "map-live", "property": "data"},
                        {"id": "map-sig", "property": "data"}],
            "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
            "state": [{"id": "map-sig", "property": "data", "value": sig},
                      {"id": "map-ready", "property": "data", "value": True},
                      {"id": "panel-sig", "property": "data", "value": None}],
            "changedPropIds": ["tick.n_intervals"]}


def write_synth_registry(data: Path, n_devices: int) -> Path:
    from core.geojson_io import write_feature_collection
    from geodata.devplan import synth_features
    from geodata.layers import layers_dir, load_layers

    reg_path = data / "registry.geojson"
    data.mkdir(parents=True)
    write_feature_collection(reg_path, synth_features(load_layers(layers_dir(settings_for(data))), n_devices, seed=7),
                             name="devices")
    return reg_path


def first_draw(p: Any, url: str) -> float:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    t0 = time.monotonic()
    page.goto(url + "/")
    page.wait_for_function(MAP_IDLE_JS, timeout=120_000)
    took = time.monotonic() - t0
    browser.close()
    return took


def server_side(n_devices: int, tmp: Path) -> dict[str, Any]:
    from alerts.store import AlertStore, store_path
    from dashboard import mapfig, mapview
    from dashboard.app import create_app

    out: dict[str, Any] = {}
    data = tmp / f"big{n_devices}"
    s = settings_for(data, write_synth_registry(data, n_devices))
    app = create_app(s, live_mqtt=False)
    d = app.server.config["SC_DASHBOARD"]
    client = app.server.test_client()
    base, reg, live = d.state.view()
    out["registry_devices"] = len(reg)
    with app.server.test_request_context("/", base_url="http://127.0.0.1:8050/"):
        fig = mapfig.build_figure(base, reg, "http://127.0.0.1:8050/map/style.json")
    out["figure_json_bytes_100k"] = len(json.dumps(fig, separators=(",", ":")))
    sig = {"v": live.version, "reg": live.registry_version, "base": base.key}
    # An unchanged tick, through Flask and Dash's callback dispatch.
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        r = client.post("/_dash-update-component", json=map_body(sig))
        times.append(time.perf_counter() - t0)
        assert r.status_code in (200, 204), r.data[:300]
    out["tick_unchanged_ms_median"] = statistics.median(times) * 1000
    # One new alert, written by another process's connection: the tick that carries it.
    store = AlertStore(store_path(s.data_path))
    devs = list(reg.values())
    changed, sizes, view_ms = [], [], []
    for i in range(10):
        store.insert(an_alert(devs[(i * 7919) % len(devs)], "red" if i % 2 else "orange"), f"bench-{i}")
        v = d.state.version
        deadline = time.time() + 5
        while d.state.version == v and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the poll thread warms the view, as in the running dashboard
        t0 = time.perf_counter()
        r = client.post("/_dash-update-component", json=map_body(sig))
        changed.append(time.perf_counter() - t0)
        sizes.append(len(r.data))
        sig = r.json["response"]["map-sig"]["data"]
        # Cold: the same work without the warm-up (a refresh that arrives first computes the view itself).
        d.state._views.clear()
        t1 = time.perf_counter()
        with app.server.test_request_context("/"):
            mapview.refresh_map(d, {**sig, "v": sig["v"] - 1})
        view_ms.append((time.perf_counter() - t1) * 1000)
    out["tick_one_new_alert_ms_median"] = statistics.median(changed) * 1000
    out["tick_one_new_alert_ms_max"] = max(changed) * 1000
    out["tick_cold_view_ms_median"] = statistics.median(view_ms)
    out["tick_one_new_alert_bytes_median"] = statistics.median(sizes)
    store.close()
    d.close()
    return out


def browser_side(tmp: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright
    from waitress import create_server

    from alerts.command import endpoint_path
    from alerts.service import AlertService
    from alerts.store import AlertStore, store_path
    from dashboard.app import create_app
    from dashboard.mapfig import build_figure

    out: dict[str, Any] = {}
    s = settings_for(tmp / "sample")
    # Staff actions are commands to the alert service: one runs here on a thread (no broker needed).
    svc = AlertService(s)
    threading.Thread(target=svc.run_forever, name="bench-alerts", daemon=True).start()
    for _ in range(400):
        if endpoint_path(s.data_path).exists():
            break
        time.sleep(0.05)
    app = create_app(s, live_mqtt=False)
    d = app.server.config["SC_DASHBOARD"]
    base, reg, _live = d.state.view()
    out["figure_json_bytes_sample"] = len(json.dumps(build_figure(base, reg, "http://127.0.0.1/x"),
                                                     separators=(",", ":")))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = create_server(app.server, host="127.0.0.1", port=port, threads=8)
    threading.Thread(target=srv.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    store = AlertStore(store_path(s.data_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = ctx.new_page()
        sizes: list[int] = []
        page.on("requestfinished",
                lambda r: sizes.append(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"]))
        t0 = time.monotonic()
        page.goto(url + "/")
        page.wait_for_function(MAP_IDLE_JS, timeout=120_000)
        out["first_map_draw_s"] = time.monotonic() - t0
        page.wait_for_timeout(1500)
        out["first_load_bytes"] = sum(sizes)
        # The wall is another PC: its own browser process (it still shares this machine's 2 cores).
        wall_browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        wall = wall_browser.new_page(viewport={"width": 1920, "height": 1080})
        wall.goto(url + "/wall")
        wall.wait_for_function(MAP_IDLE_JS, timeout=120_000)
        dev = next(iter(reg.values()))
        appear, same, on_wall = [], [], []
        for _ in range(3):
            a = an_alert(dev)
            t1 = time.monotonic()
            store.insert(a, f"bench-{a.alert_id}")
            page.wait_for_selector("#alert-list .state-active .btn-ack", timeout=60_000)
            appear.append(time.monotonic() - t1)
            print("appeared", appear[-1], flush=True)
            wall.wait_for_function("() => document.querySelector('#wall-tiles').innerText.includes('1\\n未处置')",
                                   timeout=60_000)
            # A person reads the alert before clicking: both maps have drawn it by then.
            for pg in (page, wall):
                pg.wait_for_function(DRAWN_JS, timeout=60_000)
                pg.wait_for_function(MAP_IDLE_JS, timeout=60_000)
            t2 = time.monotonic()
            page.click("#alert-list .btn-ack")
            print("clicked", time.monotonic() - t2, page.inner_text("#action-msg"), flush=True)
            page.wait_for_selector("#alert-list .state-acknowledged", timeout=60_000)
            same.append(time.monotonic() - t2)
            wall.wait_for_selector("#wall-list .state-acknowledged", timeout=60_000)
            on_wall.append(time.monotonic() - t2)
            with app.server.test_request_context("/"):
                d.resolve(a.alert_id, None)
            page.wait_for_selector("#alert-list .state-acknowledged", state="detached", timeout=60_000)
            wall.wait_for_selector("#wall-list .state-acknowledged", state="detached", timeout=60_000)
        out["new_alert_to_list_s"] = appear
        out["click_to_state_same_page_s"] = same
        out["click_to_state_wall_s"] = on_wall
        wall_browser.close()
        browser.close()
        srv.close()
        svc.stop()
        # The same first draw with 10,000 registered devices (all on the map, clustered at district zoom).
        data10k = tmp / "reg10k"
        s10 = settings_for(data10k, write_synth_registry(data10k, 10_000))
        app10 = create_app(s10, live_mqtt=False)
        d10 = app10.server.config["SC_DASHBOARD"]
        b10, r10, _l10 = d10.state.view()
        out["figure_json_bytes_10k"] = len(json.dumps(build_figure(b10, r10, "http://127.0.0.1/x"),
                                                      separators=(",", ":")))
        srv10 = create_server(app10.server, host="127.0.0.1", port=port, threads=8)
        threading.Thread(target=srv10.run, daemon=True).start()
        first_draw(p, url)  # warm-up: the server's first layout of this registry
        out["first_map_draw_10k_s"] = first_draw(p, url)
        srv10.close()
        d10.close()
    store.close()
    d.close()
    return out


# -- the stack figures ----------------------------------------------------------------------------
WALL_GOAL_S = 2.0
MAP_GOAL_S = 2.0
FIRST_DRAW_GOAL = 1.5
MAPLIBRE_VERSION = "6.9.0"  # the MapLibre inside plotly.js 4.1.1 (its bundled licence names this tag)
VENDOR = ROOT / "build" / "vendor" / f"maplibre-gl-{MAPLIBRE_VERSION}"
BARE_PAGE = Path(__file__).resolve().parent / "bare_map.html"
# The map object of either page: the dashboard's (inside plotly) or the bare page's.
MAP_OF_JS = """const g = document.querySelector('#onemap .js-plotly-plot');
  const m = window.scMap || (g && g._fullLayout && g._fullLayout.map && g._fullLayout.map._subplot
                            && g._fullLayout.map._subplot.map);"""
# Drawn: every layer of the page (n, counted once by a warm-up load) is in the style, MapLibre has
# loaded and rendered, and something is on screen. Gives performance.now(): ms since navigation start.
DRAWN_ALL_JS = "(n) => { " + MAP_OF_JS + """
  if (!m || !m.loaded() || !m.areTilesLoaded()) return false;
  const layers = (m.getStyle().layers || []).filter(l => !l.id.startsWith('sc-'));
  if (layers.length < n || m.queryRenderedFeatures().length === 0) return false;
  return performance.now(); }"""
LAYER_COUNT_JS = "() => { " + MAP_OF_JS + """
  return m ? (m.getStyle().layers || []).filter(l => !l.id.startsWith('sc-')).length : -1; }"""
MAP_SIZE_JS = "() => { " + MAP_OF_JS + " const c = m.getCanvas(); return [c.clientWidth, c.clientHeight]; }"
# A new alert dot (sc-core, what MapLibre has drawn) not among `known`: [its alert id, Date.now()].
NEW_DOT_JS = "(known) => { " + MAP_OF_JS + """
  if (!m || !m.getLayer('sc-core')) return false;
  for (const f of m.queryRenderedFeatures({layers: ['sc-core']})) {
    const id = String(f.properties.href || '').split('/').pop();
    if (id && !known.includes(id)) return [id, Date.now()];
  }
  return false; }"""
DOT_IDS_JS = "() => { " + MAP_OF_JS + """
  if (!m || !m.getLayer('sc-core')) return [];
  return m.queryRenderedFeatures({layers: ['sc-core']}).map(f => String(f.properties.href || '').split('/').pop()); }"""
# The wall lists this alert as acknowledged: Date.now().
WALL_ACKED_JS = """(id) => { for (const li of document.querySelectorAll('#wall-list li.state-acknowledged')) {
    if ((li.id || '').includes(id)) return Date.now(); }
  return false; }"""
WALL_LISTS_JS = """(id) => { for (const li of document.querySelectorAll('#wall-list li.state-active')) {
    if ((li.id || '').includes(id)) return true; }
  return false; }"""


def fetch_maplibre() -> Path:
    """The vendored MapLibre of the bare page (scripts/bootstrap.sh fetches it from npm at build time)."""
    if not (VENDOR / "maplibre-gl.mjs").is_file():
        raise SystemExit(f"{VENDOR}/maplibre-gl.mjs missing: run scripts/bootstrap.sh (needs npm) first")
    return VENDOR


class Proc:
    """One part of the system, as `smartcommunity VERB`, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        import subprocess

        self.fh = log.open("wb")
        self.p = subprocess.Popen([sys.executable, "-m", "smartcommunity", *args], env=env, cwd=ROOT,
                                  stdout=self.fh, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        import signal
        import subprocess

        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.fh.close()


def sc_cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    import subprocess

    return subprocess.run([sys.executable, "-m", "smartcommunity", *args], input=stdin, text=True, env=env,
                          cwd=ROOT, check=True, capture_output=True).stdout.strip()


def serve_dir(root: Path) -> tuple[str, Any]:
    """A plain local HTTP server for the bare page (ES modules need a JavaScript MIME type)."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map: ClassVar[dict[str, str]] = {
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            ".mjs": "text/javascript", ".js": "text/javascript", ".json": "application/json"}

        def log_message(self, *_a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}", srv


def bare_site(tmp: Path, settings: Any) -> Path:
    """bench/bare_map.html with the dashboard's own figure JSON and style, and the vendored MapLibre."""
    import shutil

    from dashboard.geo import MapData
    from dashboard.offline import FONT_PATH, latin_font, style_doc

    site = tmp / "bare"
    (site / "map" / "font").mkdir(parents=True)
    shutil.copytree(fetch_maplibre(), site / "maplibre")
    shutil.copy(BARE_PAGE, site / "index.html")
    md = MapData(settings)
    base, reg = md.layers(), md.registry()
    (site / "figure.json").write_text(json.dumps(build_figure_for(base, reg), separators=(",", ":")))
    font = latin_font()
    if font is not None:
        shutil.copy(font, site / FONT_PATH.lstrip("/"))
    (site / "style.json").write_text(json.dumps(style_doc("__BASE__")))
    return site


def build_figure_for(base: Any, reg: Any) -> dict[str, Any]:
    from dashboard.mapfig import build_figure

    return build_figure(base, reg, "style.json")


def draw_time(browser: Any, url: str, n_layers: int, storage: Any = None) -> float:
    """Seconds from navigation start to the map drawn with all its layers, in a fresh context (cold cache)."""
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, storage_state=storage)
    page = ctx.new_page()
    page.goto(url)
    ms = page.wait_for_function(DRAWN_ALL_JS, arg=n_layers, polling="raf", timeout=120_000).json_value()
    ctx.close()
    return float(ms) / 1000


def stack_side(tmp: Path, rounds: int) -> dict[str, Any]:
    import re

    import orjson
    import paho.mqtt.client as mqtt
    import requests
    from playwright.sync_api import sync_playwright

    from core.registry import ensure_registry, load_registry
    from core.settings import load_settings
    from core.timebase import parse_iso
    from smartcommunity.services import free_port, start_influxdb, start_mosquitto

    out: dict[str, Any] = {}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    s = load_settings(env, data_dir=str(tmp / "var"), mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                      influx_url=f"http://127.0.0.1:{free_port()}", http_port=port, log_level="WARNING")
    services = [start_mosquitto(s), start_influxdb(s)]
    penv = env | {"SC_MQTT_URL": s.mqtt_url, "SC_INFLUX_URL": s.influx_url, "SC_DATA_DIR": str(s.data_path),
                  "SC_HTTP_PORT": str(port), "SC_LOG_LEVEL": "WARNING", "SC_AUTO_INSTALL": "0"}
    url = f"http://127.0.0.1:{port}"
    sc_cli(["users", "add", "bench", "--role", "operator", "--name", "压测"], penv, "bench password 12345\n")
    token = sc_cli(["users", "token", "bench"], penv).splitlines()[0].strip()
    wall_link = next(x for x in sc_cli(["users", "display-link", "--base-url", url], penv).split()
                     if x.startswith("http"))
    # ingest too: the alert service acts on the records ingest accepted and hands on (ingest/forward.py)
    procs = [Proc(["ingest"], penv, tmp / "ingest.log"), Proc(["alerts"], penv, tmp / "alerts.log"),
             Proc(["dashboard", "--port", str(port)], penv, tmp / "dashboard.log")]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    site_srv = None
    try:
        for _ in range(600):
            try:
                if requests.get(url + "/api/health", timeout=2).status_code in (200, 503):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        beat = s.data_path / "run" / "alerts.json"
        for _ in range(600):
            if beat.exists() and orjson.loads(beat.read_bytes()).get("mqtt") == "ok":
                break
            time.sleep(0.2)
        pub.connect(s.mqtt.host, s.mqtt.port)
        pub.loop_start()
        gas = sorted((d for d in load_registry(ensure_registry(s)).values() if d.kind == "gas"),
                     key=lambda d: (d.community, d.device_id))
        site = bare_site(tmp, s)
        bare_url, site_srv = serve_dir(site)
        style = (site / "style.json").read_text().replace("__BASE__", bare_url)
        (site / "style.json").write_text(style)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # Signed in as the operator: the session cookie of a real sign-in, reused by each fresh context.
            ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
            form = ctx.request.get(url + "/login").text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            r = ctx.request.post(url + "/login", form={"username": "bench", "password": "bench password 12345",
                                                       "csrf": csrf, "next": "/"},
                                 headers={"Origin": url}, max_redirects=0)
            assert r.status in (302, 303), (r.status, r.text()[:300])
            signed_in = ctx.storage_state()
            ctx.close()

            # First draw: a warm-up of each page counts its layers (and warms the server), then
            # alternating cold loads in fresh contexts of the same browser.
            warm = browser.new_context(viewport={"width": 1920, "height": 1080}, storage_state=signed_in)
            page = warm.new_page()
            page.goto(url + "/")
            page.wait_for_function(MAP_IDLE_JS, timeout=120_000)
            page.wait_for_timeout(3000)
            dash_layers = page.evaluate(LAYER_COUNT_JS)
            w, h = page.evaluate(MAP_SIZE_JS)
            warm.close()
            bare = f"{bare_url}/index.html?w={w}&h={h}"
            warm = browser.new_context(viewport={"width": 1920, "height": 1080})
            page = warm.new_page()
            page.goto(bare)
            page.wait_for_function("() => window.scLayers > 0", timeout=120_000)
            page.wait_for_timeout(2000)
            bare_layers = page.evaluate(LAYER_COUNT_JS)
            warm.close()
            dash_t, bare_t = [], []
            for _ in range(rounds):
                dash_t.append(draw_time(browser, url + "/", dash_layers, signed_in))
                bare_t.append(draw_time(browser, bare, bare_layers))
            out["first_draw_dashboard_s"] = dash_t
            out["first_draw_bare_maplibre_s"] = bare_t
            out["first_draw_layers"] = f"{dash_layers} (dashboard) / {bare_layers} (bare), map {w}x{h} px"
            out["first_draw_ratio"] = statistics.median(dash_t) / statistics.median(bare_t)

            # The console (/) and the wall (another PC: its own browser, signed in by its display link).
            con_ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, storage_state=signed_in)
            console = con_ctx.new_page()
            console.goto(url + "/")
            console.wait_for_function("() => document.querySelector('#onemap .js-plotly-plot') && "
                                      "window.dash_clientside && document.querySelector('#map-ready')"
                                      " !== undefined", timeout=120_000)
            wall_browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            wall = wall_browser.new_page(viewport={"width": 1920, "height": 1080})
            wall.goto(wall_link)
            wall.wait_for_url("**/wall", timeout=60_000)
            for pg in (console, wall):
                pg.wait_for_function(MAP_IDLE_JS, timeout=120_000)
            console.wait_for_function("() => { " + MAP_OF_JS + " return !!(m && m.getLayer('sc-core')); }",
                                      timeout=60_000)

            # Alert → map: a real reading over the line, published; the engine raises, the map draws.
            raised: list[str] = []
            known: list[str] = []  # alert dots already drawn
            from_pub, from_started = [], []
            for i in range(rounds):
                dev = gas[(i * 37) % len(gas)]
                console.wait_for_timeout(1500)
                known += [x for x in console.evaluate(DOT_IDS_JS) if x not in known]
                topic = f"sc/{dev.community}/gas/{dev.device_id}/telemetry"
                t_pub = time.time()
                pub.publish(topic, orjson.dumps({"ts": int(t_pub * 1000), "m": {"lel_pct": 31.0}}), qos=1)
                while True:  # other dots may come meanwhile (e.g. silence alerts of this idle fleet)
                    got = console.wait_for_function(NEW_DOT_JS, arg=known, polling=50, timeout=60_000).json_value()
                    aid, seen_s = str(got[0]), float(got[1]) / 1000
                    known.append(aid)
                    doc = api.get(f"{url}/api/alerts/{aid}", timeout=10).json()
                    if doc.get("device_id") == dev.device_id and doc.get("rule") == "gas_lel_high":
                        break
                raised.append(aid)
                from_pub.append(seen_s - t_pub)
                from_started.append(seen_s - parse_iso(doc["started_at"]).timestamp())
            out["alert_to_map_from_publish_s"] = from_pub
            out["alert_to_map_from_started_at_s"] = from_started

            # Ack → wall: each of those alerts acknowledged through /api while the wall lists it as active.
            acks = []
            for aid in raised:
                wall.wait_for_function(WALL_LISTS_JS, arg=aid, polling=50, timeout=60_000)
                wall.wait_for_timeout(1500)
                t0 = time.time()
                r2 = api.post(f"{url}/api/alerts/{aid}/ack", json={"by": "bench", "note": "压测"}, timeout=10)
                assert r2.status_code == 200, r2.text
                seen = wall.wait_for_function(WALL_ACKED_JS, arg=aid, polling=50, timeout=60_000).json_value()
                acks.append(float(seen) / 1000 - t0)
            out["ack_to_wall_s"] = acks
            wall_browser.close()
            con_ctx.close()
            browser.close()
    finally:
        with contextlib.suppress(Exception):
            pub.loop_stop()
            pub.disconnect()
        if site_srv is not None:
            site_srv.shutdown()
        for pr in procs:
            pr.stop()
        for svc in services:
            svc.stop()
    return out


def print_stack(figs: dict[str, Any]) -> None:
    def line(name: str, xs: list[float], goal: float) -> None:
        med, top = statistics.median(xs), max(xs)
        verdict = "OK" if top <= goal else "MISS"
        print(f"{name:34s} median {med:5.2f} s  max {top:5.2f} s  goal ≤ {goal:.1f} s  {verdict}   "
              f"(each: {', '.join(f'{x:.2f}' for x in xs)})")

    line("ack → wall", figs["ack_to_wall_s"], WALL_GOAL_S)
    line("alert → map (from publication)", figs["alert_to_map_from_publish_s"], MAP_GOAL_S)
    line("alert → map (from started_at)", figs["alert_to_map_from_started_at_s"], MAP_GOAL_S)
    d, b = figs["first_draw_dashboard_s"], figs["first_draw_bare_maplibre_s"]
    ratio = figs["first_draw_ratio"]
    print(f"{'first draw of /':34s} median {statistics.median(d):5.2f} s  (each: {', '.join(f'{x:.2f}' for x in d)})")
    print(f"{'first draw, bare MapLibre':34s} median {statistics.median(b):5.2f} s  "
          f"(each: {', '.join(f'{x:.2f}' for x in b)})  layers {figs['first_draw_layers']}")
    print(f"{'first draw ratio':34s} {ratio:.2f}×  goal ≤ {FIRST_DRAW_GOAL:.1f}×  "
          f"{'OK' if ratio <= FIRST_DRAW_GOAL else 'MISS'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--stack-only", action="store_true", help="only the stack figures (wall, map, first draw)")
    ap.add_argument("--rounds", type=int, default=5, help="tries of each stack figure")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    load0 = os.getloadavg()
    print(f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if not args.no_browser:
            stack = stack_side(tmp, args.rounds)
            print_stack(stack)
            la = os.getloadavg()
            print(f"load average after the stack figures {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}", flush=True)
        if args.stack_only:
            return 0
        figs = server_side(args.devices, tmp)
        if not args.no_browser:
            figs |= browser_side(tmp)
    goals = {"tick_unchanged_ms_median": 50, "tick_one_new_alert_ms_median": 50, "figure_json_bytes_sample": 1_000_000,
             "first_load_bytes": 3_000_000, "first_map_draw_s": 2.0, "figure_json_bytes_10k": 1_000_000,
             "figure_json_bytes_100k": 1_000_000, "first_map_draw_10k_s": 4.0}
    for k, v in figs.items():
        goal = goals.get(k)
        shown = [round(x, 2) for x in v] if isinstance(v, list) else (round(v, 2) if isinstance(v, float) else v)
        ratio = f"  ({v / goal:.2f} of the goal {goal})" if goal and isinstance(v, int | float) else ""
        print(f"{k:36s} {shown}{ratio}")
    la = os.getloadavg()
    print(f"load average at end {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
