"""A gas company's scoped account in real Chromium: signed in, its map draws only gas devices and gas
alerts, and its console and alert list show only gas alerts, while a power alert is open beside them."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest

from alerts.store import AlertStore, store_path
from core.contract import KIND_LABEL, Alert
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from core.staff import Accounts, Scope, accounts_path
from dashboard.mapfig import T_DEVICES
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, GD, MAP_IDLE_JS, red_alert, served, served_with_alerts  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
PASSWORD = "gas company pw"


def power_alert(store: AlertStore, settings: Settings) -> Alert:
    dev = next(d for d in load_registry(ensure_registry(settings)).values() if d.kind == "power")
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    a = Alert(f"a-{uuid.uuid4().hex[:12]}", "device_silent", "orange", "active", dev.community, dev.compound_id,
              dev.device_id, "power", None, None, None, None, None, now, now, f"用电设备 {dev.device_id} 无数据")
    store.insert(a, dev.device_id)
    return a


def test_gas_company_sees_only_gas(served: tuple[str, Settings]) -> None:  # noqa: F811
    base_url, settings = served
    store = AlertStore(store_path(settings.data_path))
    gas, power = red_alert(store, settings), power_alert(store, settings)
    accounts = Accounts(accounts_path(settings.data_path))
    accounts.add("gasco", "燃气公司", PASSWORD)
    accounts.set_scope("gasco", Scope.of(kinds=["gas"]))
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900}, locale="zh-CN")
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base_url + "/")
        page.fill("#u", "gasco")
        page.fill("#p", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector(f"text={gas.message}", timeout=30_000)  # the console's list
        page.wait_for_function(MAP_IDLE_JS, timeout=60_000)
        page.wait_for_function("() => window.scLive && window.scLive.alerts.length > 0", timeout=30_000)
        live: Any = page.evaluate("() => JSON.stringify(window.scLive)")
        assert gas.alert_id in live and power.alert_id not in live
        custom = page.evaluate(f"() => JSON.stringify({GD}.data[{T_DEVICES}].customdata)")
        others = [KIND_LABEL[k] for k in ("power", "water", "camera")]
        assert KIND_LABEL["gas"] in custom and not [w for w in others if w in custom]
        assert not re.search(r"\b[PCW]-\d{6}\b", custom)  # no other kind's device id either
        body = page.inner_text("body")
        assert power.message not in body and "燃气公司" in body
        page.goto(base_url + "/alerts")
        page.wait_for_selector(f"text={gas.message}", timeout=30_000)
        assert power.message not in page.inner_text("body")
        assert page.goto(f"{base_url}/alerts/{power.alert_id}").status == 404  # type: ignore[union-attr]
        browser.close()
    store.close()
    assert errors == [], errors
