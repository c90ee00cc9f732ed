"""The 6·13 scenario in real Chromium: a red gas leak at 62 %LEL; 解除 on the alert page is refused
with the live reading and its time in the dialog; an override without a reason changes nothing; with
a reason it closes (recorded on the timeline); the leak still measured reopens the SAME alert id,
shown as 复燃 on the alert page and in the console's list, whose dialog names the reading too; a
life-safety shelf approved by a second person is marked on the console and the wall."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.shelving import shelve
from alerts.store import AlertStore, store_path
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from tests.conftest import feed, wait_until
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, served_with_alerts, wait_with  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")


def test_the_6_13_scenario(served_with_alerts: tuple[str, Settings, Any]) -> None:  # noqa: F811
    base_url, settings, svc = served_with_alerts
    store = AlertStore(store_path(settings.data_path))  # read only: the alert service writes
    dev = next(d for d in load_registry(ensure_registry(settings)).values()
               if d.community == "lanshanjun" and d.kind == "gas")

    def leak(lel: float) -> Any:
        """A reading handed to the running alert service as ingest would; its open alert of the device."""
        n = svc.counters["received"]
        feed(svc, dev, {"lel_pct": lel})
        assert wait_until(lambda: svc.counters["received"] > n, timeout=30)
        return wait_until(lambda: next((a for a in svc.engine.open.values() if a.device_id == dev.device_id), None),
                          timeout=30)

    first = leak(62.0)
    assert first is not None and first.severity == "red"
    aid = first.alert_id
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", on_dialog)
        page.goto(f"{base_url}/alerts/{aid}")
        page.wait_for_selector("#alert-resolve", timeout=30_000)

        # 解除 with nothing typed: the dialog names the live reading and its time; OK alone changes nothing.
        page.click("#alert-resolve")
        assert wait_with(page, lambda: len(dialogs) == 1, timeout=15)
        assert "仍在报警" in dialogs[0] and "62.0 %LEL" in dialogs[0] and "理由" in dialogs[0]
        page.wait_for_selector("#alert-msg >> text=强制解除必须写明理由", timeout=15_000)
        assert store.get(aid).state == "active"  # type: ignore[union-attr]
        page.screenshot(path="/tmp/guard_refused.png")

        # With a reason: an override, recorded with who, why and the reading it was given against.
        page.fill("#alert-note", "燃气公司已关总阀，等待复测")
        page.click("#alert-resolve")
        assert wait_with(page, lambda: store.get(aid).state == "resolved", timeout=15)  # type: ignore[union-attr]
        assert len(dialogs) == 2 and "62.0 %LEL" in dialogs[1]
        step = store.timeline(aid)[-1]
        assert step.event == "resolved" and step.data["override"] is True and step.note == "燃气公司已关总阀，等待复测"
        assert wait_with(page, lambda: "强制解除" in page.inner_text("#alert-msg"), timeout=15), \
            page.inner_text("#alert-msg")

        # The leak is still measured: the SAME incident comes back, 复燃, one tier up.
        again = leak(62.0)
        assert again is not None and again.alert_id == aid and again.reopened == 1 and again.state == "active", again
        page.wait_for_selector("#alert-head >> text=复燃", timeout=30_000)
        page.screenshot(path="/tmp/guard_reopened.png")

        # A second person approves shelving the compound for the repair: marked on the console and the wall.
        shelve(store, "compound", dev.compound_id, 3600, "燃气公司抢修", "zhangsan", approved_by="lisi",
               approver_role={"lisi": "operator"}.get)
        page.goto(base_url + "/")
        page.wait_for_selector("#shelf-marker >> text=生命安全告警已搁置", timeout=30_000)
        assert "lisi 批准" in page.inner_text("#shelf-marker")
        page.wait_for_selector(".reopened-tag", timeout=30_000)
        assert "复燃×1" in page.inner_text(".reopened-tag")
        page.click(f"[id*='{aid}'].btn-resolve, .btn-resolve")
        assert wait_with(page, lambda: len(dialogs) == 3, timeout=15)
        assert "62.0 %LEL" in dialogs[2] and "仍在报警" in dialogs[2]
        assert store.get(aid).state == "active"  # type: ignore[union-attr]  # empty note: refused again
        page.goto(base_url + "/wall")
        page.wait_for_selector("#wall-shelf-marker >> text=生命安全告警已搁置", timeout=30_000)
        page.wait_for_selector("#wall-list .reopened-tag", timeout=30_000)
        page.screenshot(path="/tmp/guard_wall.png")
        browser.close()
    store.close()
    assert errors == [], errors
