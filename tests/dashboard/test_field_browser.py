"""Dispatch → accept → arrived → feedback (with a photo) → archive, in real Chromium on a phone-size
viewport (390×844): the field page fits the screen, its controls are at least 44 px, a bad upload
is refused on the phone with a message and changes nothing, and the alert's timeline holds every
step. Screenshots go to /tmp/field_*.png."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from alerts.dispatch import CAUSES, clean_photo
from alerts.store import AlertStore, store_path
from core.settings import Settings
from core.timebase import beijing, epoch
from tests.alerts.test_dispatch import jpeg
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, external, red_alert, served, served_with_alerts  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN"}
MIN_PX = 44

BOX_JS = """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
  return {w: r.width, h: r.height, right: r.right}; }"""


def small_controls(page: object, selectors: list[str]) -> list[tuple[str, dict]]:
    out = []
    for sel in selectors:
        box = page.evaluate(BOX_JS, sel)  # type: ignore[attr-defined]
        if box["h"] < MIN_PX or box["w"] < MIN_PX or box["right"] > 390:
            out.append((sel, box))
    return out


def fits_width(page: object) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= 390"))  # type: ignore[attr-defined]


def test_dispatch_to_archive_on_a_phone(served: tuple[str, Settings], tmp_path: Path) -> None:  # noqa: F811
    base_url, settings = served
    store = AlertStore(store_path(settings.data_path))  # the alert engine's side, a second writer
    alert = red_alert(store, settings)
    aid = alert.alert_id
    api = requests.Session()
    r = api.post(f"{base_url}/api/alerts/{aid}/dispatch",
                 json={"team": "gas", "member": "gas-wang", "deadline_min": 30, "by": "值班员张三", "note": "厨房报警"})
    assert r.status_code == 201, r.text
    link = base_url + "/d/" + r.json()["link"].split("/d/")[1]
    # The message names the place in words (compound, building, install place), not ids alone.
    from core.registry import ensure_registry, load_registry
    from geodata.layers import layers_dir, load_layers

    dev = load_registry(ensure_registry(settings))[alert.device_id]
    layers = load_layers(layers_dir(settings))
    compound = layers.places[alert.compound_id].name
    building = dict(zip(layers.buildings["building_id"], layers.buildings["name"], strict=True))[
        dev.extra["building_id"]]
    sent = [json.loads(line) for line in (settings.data_path / "alerts" / "outbox.jsonl").read_text().splitlines()]
    assert len(sent) == 1 and sent[0]["event"] == "dispatch" and sent[0]["to"] == [{"name": "王师傅",
                                                                                   "phone": "13800000101"}]
    assert f"蓝山郡社区 {compound} {building} {dev.extra['install']}" in sent[0]["text"]
    assert dev.extra["building_id"] not in sent[0]["text"]
    seen: list[str] = []
    photo = jpeg(1200, 900)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(**PHONE)
        page = ctx.new_page()
        page.on("request", lambda req: seen.append(req.url))
        page.goto(link)
        page.wait_for_selector("#accept")
        body = page.inner_text("body")
        assert alert.message in body and "十堰燃气公司张湾抢修队" in body and "厨房报警" in body
        assert fits_width(page) and small_controls(page, ["#accept", "#name"]) == []
        page.screenshot(path="/tmp/field_1_dispatched.png", full_page=True)

        page.fill("#name", "王师傅")
        page.tap("#accept")
        page.wait_for_selector("#arrive")
        assert "已接单" in page.inner_text("#ok")
        assert small_controls(page, ["#arrive"]) == []
        page.tap("#arrive")
        page.wait_for_selector("#submit-feedback")
        assert fits_width(page)
        assert small_controls(page, ["#cause", "#action", "#text", "#photo1", "#submit-feedback"]) == []
        page.screenshot(path="/tmp/field_2_arrived.png", full_page=True)

        # A file that is no picture, whatever its name says: refused on the phone, nothing changes.
        before = store.timeline(aid)
        page.select_option("#cause", CAUSES[1])
        page.select_option("#action", "关阀/停气")
        page.fill("#text", "灶具软管老化脱落，已关入户阀，开窗通风")
        page.set_input_files("#photo1", files=[{"name": "现场.jpg", "mimeType": "image/jpeg",
                                                "buffer": b"this is a text file, not a photo"}])
        page.tap("#submit-feedback")
        page.wait_for_selector("#error")
        assert "不是图片" in page.inner_text("#error")
        assert store.timeline(aid) == before
        page.screenshot(path="/tmp/field_3_refused.png", full_page=True)

        # What was typed and chosen is still there: only the photo is chosen again.
        assert page.input_value("#cause") == CAUSES[1] and page.input_value("#action") == "关阀/停气"
        assert page.input_value("#text") == "灶具软管老化脱落，已关入户阀，开窗通风"
        page.set_input_files("#photo1", files=[{"name": "IMG_0042.jpg", "mimeType": "image/jpeg", "buffer": photo}])
        page.tap("#submit-feedback")
        page.wait_for_selector("#done")
        assert "反馈已提交" in page.inner_text("#ok") and CAUSES[1] in page.inner_text("#done")
        page.screenshot(path="/tmp/field_4_done.png", full_page=True)
        # Reopening the link later shows the record, with no buttons left to press.
        page.goto(link)
        assert page.locator("button").count() == 0
        browser.close()
    assert external(seen) == []

    # Back at the command center: the condition clears, the alert is archived with a cause.
    assert store.resolve(aid, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())) is not None  # by itself
    pend = api.get(f"{base_url}/api/archive/pending").json()
    assert [a["alert_id"] for a in pend["alerts"]] == [aid]
    assert pend["alerts"][0]["dispatches"][0]["state"] == "done"
    r = api.post(f"{base_url}/api/alerts/{aid}/archive", json={"by": "值班长李四", "cause": CAUSES[1]})
    assert r.status_code == 200, r.text
    assert api.get(f"{base_url}/api/archive/pending").json()["count"] == 0
    got = api.get(f"{base_url}/api/alerts/{aid}").json()
    steps = [(s["event"], s["by"]) for s in got["timeline"]]
    assert steps == [("raised", "system"), ("dispatched", "值班员张三"), ("notified", "system"),
                     ("accepted", "王师傅"), ("arrived", "王师傅"), ("feedback", "王师傅"),
                     ("resolved", "system"), ("archived", "值班长李四")]
    fb = got["timeline"][5]
    kept = clean_photo(photo, "jpeg")  # re-encoded on arrival, without metadata
    assert fb["data"]["cause"] == CAUSES[1] and fb["data"]["photos"][0]["bytes"] == len(kept)
    did = fb["data"]["dispatch_id"]
    assert api.get(f"{base_url}/api/dispatches/{did}/photos/1").content == kept
    store.close()



def test_the_report_page_draws_its_charts_offline(served: tuple[str, Settings]) -> None:  # noqa: F811
    base_url, settings = served
    store = AlertStore(store_path(settings.data_path))
    alert = red_alert(store, settings)
    store.close()
    month = beijing(epoch(alert.started_at)).strftime("%Y-%m")  # the report's months are Beijing months
    seen: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.on("request", lambda req: seen.append(req.url))
        last = beijing(time.time() + 86400).strftime("%Y-%m-%d")
        page.goto(f"{base_url}/report?from={month}-01&to={last}")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4",
                               timeout=30_000)
        # every chart fits its own cell of the grid (none drawn as wide as the page and cut off)
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).every(gd => "
                               "Math.abs(gd._fullLayout.width - gd.parentElement.getBoundingClientRect().width) < 2)",
                               timeout=10_000)
        bars = page.evaluate("() => Array.from(document.querySelectorAll('#chart-by_severity .js-plotly-plot'))"
                             ".map(gd => gd.data.map(t => t.y.reduce((a, b) => a + b, 0)))")
        assert sum(bars[0]) == 1  # the one alert, in the severity chart
        page.screenshot(path="/tmp/field_report.png", full_page=False)
        browser.close()
    assert external(seen) == []
