"""In real Chromium: a duty officer whose account stands for a roster person sets their notification
channels and quiet hours on /settings (saved by the alerts service, audited, shown again on the next
visit), and sets a maintenance window by a cron expression on /shelves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.staff import Accounts, accounts_path
from dashboard.app import create_app
from dashboard.audit import audit_path
from tests.conftest import RunningAlerts, make_settings
from tests.dashboard.test_console_loop_browser import PASSWORD, sign_in
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, free_port

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

WALL = {"viewport": {"width": 1920, "height": 1080}, "locale": "zh-CN"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Path]]:
    """(dashboard URL, the alert service, data dir): accounts, one linked to the roster's yl_duty."""
    from waitress import create_server

    data = tmp_path_factory.mktemp("settings") / "var"
    s = make_settings(data, mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    acc = Accounts(accounts_path(data))
    acc.add("xiaoli", "岩岭值班员小李", PASSWORD, role="operator", person="yl_duty")
    acc.add("kan", "查看员王五", PASSWORD, role="viewer")  # stands for nobody of the roster
    with RunningAlerts(s, broker=False) as svc:  # no broker: commands work all the same
        app = create_app(s, live_mqtt=False)
        port = free_port()
        srv = create_server(app.server, host="127.0.0.1", port=port, threads=6)
        threading.Thread(target=srv.run, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{port}", svc, data
        finally:
            srv.close()
            app.server.config["SC_DASHBOARD"].close()


def test_a_duty_officer_sets_channels_and_quiet_hours(stack: tuple[str, Any, Path]) -> None:
    base, svc, data = stack
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(**WALL).new_page()
        sign_in(page, base, "xiaoli")
        page.click(".whoami a")  # their name in the title bar leads to their settings
        page.wait_for_selector("#pref-save", timeout=20_000)
        assert "红色告警总会通过您在值班表中的全部渠道通知" in page.inner_text("body")
        assert "岩岭社区值班员" in page.inner_text("#pref-person")  # their own, not to be changed
        assert "尚未设置" in page.inner_text("#pref-current")
        for label in ("短信/电话", "企业微信", "钉钉"):
            page.click(f"#pref-channels label:has-text('{label}')")  # all off
        page.click("#pref-save")
        page.wait_for_selector("#pref-msg >> text=请至少选择一个通知渠道", timeout=10_000)
        for label in ("企业微信", "钉钉"):
            page.click(f"#pref-channels label:has-text('{label}')")
        page.fill("#pref-quiet-from", "22:00")
        page.fill("#pref-quiet-to", "7:00")
        page.click("#pref-save")
        page.wait_for_selector("#pref-msg >> text=已保存", timeout=15_000)
        row = svc.store.preferences()["yl_duty"]
        assert (row["channels"], row["quiet"], row["updated_by"]) == (["wecom", "dingtalk"], "22:00-07:00",
                                                                       "岩岭值班员小李")
        assert svc.preferences.current()["yl_duty"].quiet == "22:00-07:00"  # in force in the service at once
        page.reload()
        page.wait_for_selector("#pref-save", timeout=20_000)
        checked = page.eval_on_selector_all("#pref-channels input", "els => els.filter(e => e.checked).length")
        assert checked == 2 and page.input_value("#pref-quiet-from") == "22:00"
        assert page.input_value("#pref-quiet-to") == "07:00"
        assert "企业微信、钉钉；免打扰 每天 22:00–次日 07:00。岩岭值班员小李 于" in page.inner_text("#pref-current")
        lines = [orjson.loads(x) for x in audit_path(data).read_bytes().splitlines()]
        saved = [x for x in lines if x.get("action") == "preferences.set" and x.get("outcome") == "ok"]
        assert saved and saved[-1]["target"] == "yl_duty" and saved[-1]["detail"]["quiet"] == "22:00-07:00"
        assert saved[-1]["actor"] == "xiaoli" and saved[-1]["at"]
        # An account that stands for nobody of the roster is told so, and has nothing to save.
        other = browser.new_context(**WALL).new_page()
        sign_in(other, base, "kan")
        other.goto(f"{base}/settings")
        other.wait_for_selector("text=未关联值班表中的人员", timeout=20_000)
        assert other.query_selector("#pref-save") is None
        browser.close()


def test_a_cron_maintenance_window_set_from_the_console(stack: tuple[str, Any, Path]) -> None:
    base, svc, _data = stack
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(**WALL).new_page()
        sign_in(page, base, "xiaoli")
        page.goto(f"{base}/shelves")
        page.wait_for_selector("#shelf-btn", timeout=20_000)
        page.click("#shelf-scope label:has-text('设备类型')")
        page.click("#shelf-target")
        page.get_by_role("option", name="供水").click()
        page.fill("#shelf-reason", "供水公司工作日例行检修")
        page.click("#shelf-mode label:has-text('按定时计划')")
        page.wait_for_selector("#shelf-cron:not([hidden])", timeout=10_000)
        page.fill("#shelf-cron-expr", "0 9 * *")
        page.click("#shelf-btn")
        page.wait_for_selector("#shelf-msg >> text=定时计划请写五段", timeout=15_000)
        page.fill("#shelf-cron-expr", "0 9 * * 1-5")
        page.fill("#shelf-cron-weeks", "4")
        page.click("#shelf-btn")
        page.wait_for_selector("#shelf-msg >> text=已设维护时段", timeout=15_000)
        assert "每周一至周五 09:00 起 2 小时" in page.inner_text("#shelf-msg")
        page.wait_for_selector(".shelf-item .shelf-every", timeout=15_000)
        assert "每周一至周五 09:00 起 2 小时" in page.inner_text(".shelf-list")
        live = svc.store.shelves(live_at=time.time())
        assert [(s["scope"], s["target"], s["every"]) for s in live] == [("kind", "water", "cron(0 9 * * 1-5) 2h")]
        assert 4 * 7 * 86400 - 120 < live[0]["until"] - time.time() <= 4 * 7 * 86400
        browser.close()
