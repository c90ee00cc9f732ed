"""The web defences in real Chromium against the running dashboard: the pages still work under the CSP
(no violation, no page error), sign-in and a click on 确认 are signed by the account, a viewer's click
is refused, the display link opens the wall with no typing until it is revoked, and a copied cookie
is dead after sign-out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, wait_with
from tests.security.web.conftest import PASSWORD, LiveDashboard

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

CSP_LISTENER = """window.__csp = []; document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""


class Watch:
    """Console CSP messages, page errors and requests that leave 127.0.0.1, for every page of a context."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, page: Any) -> Any:
        page.on("console", lambda m: self.problems.append("console: " + m.text)
                if "Content Security Policy" in m.text or "Refused to" in m.text else None)
        page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        page.on("request", lambda r: self.problems.append("external: " + r.url)
                if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        return page

    def check(self, page: Any) -> None:
        seen = page.evaluate("() => window.__csp || []")
        assert seen == [] and self.problems == [], (seen, self.problems)


def test_pages_work_under_the_csp_and_actions_are_signed(live: LiveDashboard) -> None:
    alert = live.alert()
    watch = Watch()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        ctx.add_init_script(CSP_LISTENER)
        page = watch.attach(ctx.new_page())
        page.goto(live.url + "/?from=mail")
        assert "/login" in page.url  # sent to sign in, and back to the page asked for after
        page.fill("#u", "zhang")
        page.fill("#p", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(live.url + "/?from=mail", timeout=60_000)
        page.wait_for_selector("#onemap .maplibregl-canvas", timeout=120_000)  # the map starts under the CSP
        page.wait_for_selector(f"text={alert.message}", timeout=30_000)
        page.fill("#action-note", "已到场")
        page.click(".btn-ack")
        assert wait_with(page, lambda: live.state(alert.alert_id).state == "acknowledged", 15)
        assert live.state(alert.alert_id).acked_by == "张三"
        page.wait_for_timeout(1500)
        watch.check(page)
        stolen = ctx.cookies()

        # Signed out in another tab: this one leaves for sign-in by itself (no frozen old picture).
        tab = ctx.new_page()
        tab.goto(live.url + "/logout")
        tab.click("button[type=submit]")
        tab.wait_for_url(live.url + "/login")
        page.wait_for_url(f"{live.url}/login**", timeout=30_000)
        # The cookie as it was before sign-out, in a fresh browser: the page sends it to sign-in.
        other = browser.new_context()
        other.add_cookies(stolen)
        p2 = other.new_page()
        p2.goto(live.url + "/")
        assert "/login" in p2.url
        browser.close()


def test_viewer_and_display_link_in_the_browser(live: LiveDashboard) -> None:
    alert = live.alert()
    watch = Watch()
    url = live.cli("users", "display-link", "--base-url", live.url).stdout.strip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
        ctx.add_init_script(CSP_LISTENER)
        wall = watch.attach(ctx.new_page())
        wall.goto(url)  # no typing
        wall.wait_for_url(live.url + "/wall")
        wall.wait_for_selector(f"text={alert.message}", timeout=30_000)
        wall.wait_for_selector("#onemap .maplibregl-canvas", timeout=120_000)
        wall.wait_for_timeout(1500)
        watch.check(wall)

        # The same identity on the console page: it sees, and has no buttons to act with (a forced
        # click is refused by the server: tests/dashboard/test_console_loop_browser.py).
        wall.goto(live.url + "/")
        wall.wait_for_selector(f"text={alert.message}", timeout=60_000)
        wall.wait_for_selector("#onemap .maplibregl-canvas", timeout=120_000)
        assert wall.locator("#alert-list .alert-item").count() >= 1
        assert wall.locator(".btn-ack, .btn-resolve, .btn-dispatch").count() == 0
        assert live.state(alert.alert_id).state == "active"
        watch.check(wall)
        wall.goto(live.url + "/wall")
        wall.wait_for_selector(f"text={alert.message}", timeout=60_000)

        link_id = live.cli("users", "display-link", "--list").stdout.strip().splitlines()[-1].split("\t")[0]
        assert live.cli("users", "display-link", "--revoke", link_id).returncode == 0
        wall.wait_for_url(f"{live.url}/login**", timeout=30_000)  # at its next refresh, no reload by hand
        wall.goto(url)
        assert "显示链接无效" in wall.inner_text("body")
        browser.close()
