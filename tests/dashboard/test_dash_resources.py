"""Emergency resources on the one map (their own toggleable trace, own colours, Chinese hover labels)
and on the alert page (listed with distances). The browser part runs in real Chromium; screenshots go
to /tmp/dash_resources*.png."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from alerts.context import Surroundings, distance_text
from alerts.store import AlertStore, store_path
from core.contract import Alert
from core.registry import bundled_registry_path, load_registry
from core.severity import COLOUR
from dashboard.app import create_app
from dashboard.mapfig import T_LABELS, T_RESOURCES
from dashboard.mapview import LAYER_OPTIONS, LAYERS_ON
from dashboard.theme import RESOURCE_STYLE
from geodata.layers import load_bundled_layers
from geodata.resources import CATEGORIES
from tests.conftest import make_settings
from tests.dashboard.pagehelp import find, page_layout, text_of
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, MAP_IDLE_JS, screen_xy, served, served_with_alerts  # noqa: F401
from tests.dashboard.test_dash_map import find_figure

GD = "document.querySelector('#onemap .js-plotly-plot')"


@pytest.fixture
def app_client(tmp_path: Path) -> Any:
    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(s)
    yield app.server.test_client(), s
    app.server.config["SC_DASHBOARD"].close()


def test_the_map_has_a_resources_layer_with_its_own_colours(app_client: Any) -> None:
    client, _ = app_client
    fig = find_figure(page_layout(client, "/"))
    assert fig is not None
    data = fig["data"]
    assert T_RESOURCES < T_LABELS == len(data) - 1  # the community names stay last
    tr = data[T_RESOURCES]
    res = load_bundled_layers().resources
    assert tr["name"] == "应急资源" and len(tr["lon"]) == len(res)
    assert set(RESOURCE_STYLE) == set(CATEGORIES)  # every category has its own look
    colours = set(tr["marker"]["color"])
    assert colours == {c for c, _ in RESOURCE_STYLE.values()} and len(colours) == len(CATEGORIES)
    assert not colours & {c.lower() for c in COLOUR.values()}  # not the severity colours
    labels = {cd[1] for cd in tr["customdata"]}
    assert {"燃气阀门", "供水阀门", "消火栓", "燃气抢修队", "供水抢修队", "应急避难场所", "AED"} <= labels
    by_name = {cd[0]: cd for cd in tr["customdata"]}
    assert by_name["半山尚小区 东侧阀门"][2] == "关闭 半山尚小区"
    assert "可容纳 1500 人" in by_name["车城路小学操场应急避难场所"][2]
    assert "%{customdata[1]}" in tr["hovertemplate"]
    assert "resources" in [o["value"] for o in LAYER_OPTIONS] and "resources" in LAYERS_ON


def _alert(store: AlertStore, dev: Any, rule: str, severity: str, nearby: dict[str, Any] | None) -> Alert:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    a = Alert(f"a-{uuid.uuid4().hex[:12]}", rule, severity, "active", dev.community, dev.compound_id,
              dev.device_id, dev.kind, "lel_pct", 31.0, 25.0, None, None, now, now, "燃气浓度 31.0 %LEL ≥ 25 %LEL",
              nearby=nearby)
    store.insert(a, dev.device_id)
    return a


def test_the_alert_page_lists_the_nearest_resources_with_distances(app_client: Any) -> None:
    client, s = app_client
    reg = load_registry(bundled_registry_path())
    dev = next(d for d in reg.values() if d.kind == "gas" and d.compound_id == "YL-01")
    near = Surroundings(200).around(dev.lon, dev.lat)
    valve = next(r for r in near["resources"] if r["need"] == "gas_valve")
    store = AlertStore(store_path(s.data_path))
    red = _alert(store, dev, "gas_lel_high", "red", near)
    text = text_of(page_layout(client, f"/alerts/{red.alert_id}"))
    assert "最近应急资源" in text
    assert f"燃气阀门 · {distance_text(valve['distance_m'])} · 半山尚小区 东侧阀门 · 关闭 半山尚小区" in text
    assert "燃气抢修队 · " in text and "AED · " in text
    assert text.index("燃气阀门 · ") < text.index("AED · ")  # what a gas alert needs first
    sketch = find(page_layout(client, f"/alerts/{red.alert_id}"),
                  lambda n: n.get("type") == "Graph" and "context-map" in str(n["props"].get("className")))
    drawn = [t for t in sketch[0]["props"]["figure"]["data"] if "燃气阀门" in str(t.get("text"))]
    assert drawn and any("半山尚小区 东侧阀门" in str(x) for x in drawn[0]["text"])  # on its sketch too
    # A yellow warning carries no surroundings: the page asks the layers itself, from the device's spot.
    yellow = _alert(store, dev, "gas_lel_warn", "yellow", None)
    assert f"燃气阀门 · {distance_text(valve['distance_m'])} · 半山尚小区 东侧阀门" in \
        text_of(page_layout(client, f"/alerts/{yellow.alert_id}"))
    # No spot (unknown device and compound): no made-up distances from a community's centre.
    lost = Alert(f"a-{uuid.uuid4().hex[:12]}", "community_silent", "orange", "active", "yanhu", None, None,
                 "gas", None, None, None, None, None, red.started_at, red.started_at, "社区失联")
    store.insert(lost, "yanhu")
    assert "无应急资源信息" in text_of(page_layout(client, f"/alerts/{lost.alert_id}"))
    store.close()


sync_api = pytest.importorskip("playwright.sync_api")


@pytest.mark.browser
def test_resources_toggle_and_hover_in_the_browser(served: tuple[str, Any]) -> None:  # noqa: F811
    base_url, settings = served
    errors: list[str] = []
    vis = f"() => {GD}.data[{T_RESOURCES}].visible"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base_url + "/")
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        assert page.evaluate(vis) is not False
        assert "燃气阀门" in page.inner_text(".map-legend") and "AED" in page.inner_text(".map-legend")
        page.screenshot(path="/tmp/dash_resources.png")
        # Zoomed on 半山尚小区: its valves are drawn and hovering one names it in Chinese.
        ll = page.evaluate(f"""() => {{ const t = {GD}.data[{T_RESOURCES}];
            const i = t.customdata.findIndex(c => c[0] === '半山尚小区 东侧阀门'); return [t.lon[i], t.lat[i]]; }}""")
        page.evaluate(f"(ll) => {GD}._fullLayout.map._subplot.map.jumpTo({{center: ll, zoom: 17}})", ll)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_timeout(500)
        drawn = f"""() => {{ const m = {GD}._fullLayout.map._subplot.map, uid = {GD}._fullData[{T_RESOURCES}].uid;
            const ids = m.getStyle().layers.map(l => l.id).filter(id => id.indexOf(uid) >= 0);
            return ids.length ? m.queryRenderedFeatures({{layers: ids}}).length : 0; }}"""
        assert page.evaluate(drawn) > 0
        xy = screen_xy(page, ll)
        page.mouse.move(xy[0] + 1, xy[1])
        page.mouse.move(xy[0], xy[1])
        page.wait_for_selector(".hoverlayer .hovertext >> text=燃气阀门", timeout=10_000)
        assert "关闭 半山尚小区" in (page.text_content(".hoverlayer") or "")
        page.screenshot(path="/tmp/dash_resources_zoom.png")
        page.mouse.move(5, 1000)
        # Unticked, the layer goes; ticked again, it comes back.
        page.click(".layer-panel summary")
        page.click(".layer-item:has-text('应急资源')")
        page.wait_for_function(f"() => ({vis})() === false", timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        assert page.evaluate(drawn) == 0
        page.click(".layer-item:has-text('应急资源')")
        page.wait_for_function(f"() => ({vis})() === true", timeout=15_000)
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_function(f"() => ({drawn})() > 0", timeout=15_000)
        # The alert page lists them, the ones a gas leak needs first.
        dev = next(d for d in load_registry(bundled_registry_path()).values()
                   if d.kind == "gas" and d.compound_id == "YL-01")
        store = AlertStore(store_path(settings.data_path))
        a = _alert(store, dev, "gas_lel_high", "red", Surroundings(200).around(dev.lon, dev.lat))
        store.close()
        page.goto(f"{base_url}/alerts/{a.alert_id}")
        page.wait_for_selector("#alert-resources >> text=燃气阀门", timeout=30_000)
        first = page.inner_text("#alert-resources li:first-child")
        assert first.startswith("燃气阀门 · ") and "关闭 半山尚小区" in first
        page.screenshot(path="/tmp/dash_resources_alert.png")
        browser.close()
    assert errors == [], errors
