"""A patrol check-in on a phone (390×844) in real Chromium with the position Playwright gives it: too
far from the checkpoint is refused on the phone with the distance, at the checkpoint it is recorded
(with a finding, which opens a hazard, then listed on /hazards) and the plan shows the round done.
Screenshot: /tmp/patrol_phone.png."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.store import open_store
from core.settings import Settings
from core.timebase import beijing
from tests.conftest import RunningAlerts, make_settings
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, free_port
from tests.dashboard.test_field_browser import PHONE, fits_width, small_controls

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

LON, LAT = 110.7905, 32.6421


@pytest.fixture
def patrol_served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    from waitress import create_server

    from dashboard.app import create_app

    plans = tmp_path / "patrols.yaml"
    plans.write_text(f"""plans:
  - id: p1
    name: 艳湖路燃气管巡检
    community: yanhu
    segment: 艳湖路中压燃气管一段
    who: {{team: gas}}
    every: 1d
    start: {beijing().date().isoformat()}
    checkpoints:
      - {{name: 北口阀井, lon: {LON}, lat: {LAT}, tolerance_m: 30}}
""", encoding="utf-8")
    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9",
                      patrols_file=str(plans))
    with RunningAlerts(s, broker=False):
        app = create_app(s)
        port = free_port()
        srv = create_server(app.server, host="127.0.0.1", port=port, threads=4)
        threading.Thread(target=srv.run, daemon=True).start()
        yield f"http://127.0.0.1:{port}", s
        srv.close()
        app.server.config["SC_DASHBOARD"].close()


def test_a_patrol_check_in_on_the_phone(patrol_served: tuple[str, Settings]) -> None:
    base_url, settings = patrol_served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(**PHONE, permissions=["geolocation"],
                                  geolocation={"longitude": LON + 0.002, "latitude": LAT})  # ~190 m east
        page = ctx.new_page()
        page.goto(base_url + "/patrol")
        page.wait_for_selector("#pt-p1")
        assert "本轮待巡" in page.inner_text("#pt-p1")
        page.fill("#patrol-findings", "阀井盖板破损")
        page.click("#patrol-go")
        page.wait_for_selector("#patrol-refused", timeout=8000)
        refused = page.inner_text("#patrol-refused")
        assert "超出允许的 30 米" in refused and "北口阀井" in refused, refused
        store = open_store(settings)
        assert store.checkins("2000-01-01T00:00:00Z") == [] and store.hazards() == []
        ctx.set_geolocation({"longitude": LON + 0.0001, "latitude": LAT})  # ~9 m
        page.click("#patrol-go")
        page.wait_for_selector("#patrol-ok", timeout=8000)
        assert "北口阀井" in page.inner_text("#patrol-ok") and page.is_visible("#patrol-hazard")
        page.wait_for_function("() => document.querySelector('#pt-p1').innerText.includes('本轮已完成')")
        assert fits_width(page) and not small_controls(page, ["#patrol-go"])
        page.screenshot(path="/tmp/patrol_phone.png")
        page.click("text=隐患整改清单")  # the hazard is listed with its deadline, to be rectified
        page.wait_for_selector(".hz-card")
        listed = page.inner_text(".hz-card")
        assert "阀井盖板破损" in listed and "待整改" in listed and "整改期限" in listed, listed
        assert fits_width(page)
        browser.close()
    rows = store.checkins("2000-01-01T00:00:00Z")
    assert len(rows) == 1 and rows[0]["by"] and rows[0]["distance_m"] < 15
    assert [h["finding"] for h in store.hazards(["open"])] == ["阀井盖板破损"]
    store.close()
