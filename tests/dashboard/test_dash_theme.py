"""The page gets the severity colours and the clock's time zone from core (one home), in real Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.severity import COLOUR, css_variables
from core.timebase import TZ_NAME, beijing
from dashboard.app import create_app
from smartcommunity.services import free_port
from tests.conftest import make_settings
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    from waitress import create_server

    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(s)
    port = free_port()
    srv = create_server(app.server, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=srv.run, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    srv.close()
    app.server.config["SC_DASHBOARD"].close()


def test_page_head_carries_the_variables(base_url: str) -> None:
    import requests

    html = requests.get(base_url + "/", timeout=10).text
    assert css_variables() in html
    assert f'"timeZone": "{TZ_NAME}"' in html


@pytest.mark.browser
def test_styles_and_clock_come_from_core(base_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # a browser in another time zone: the wall clock must still show Beijing time
        page = browser.new_context(timezone_id="Europe/London", locale="zh-CN").new_page()
        page.goto(base_url + "/")
        page.wait_for_selector("#clock:not(:empty)", timeout=60_000)
        root = page.evaluate("() => getComputedStyle(document.documentElement).getPropertyValue('--sev-red')")
        assert root.strip() == COLOUR["red"]
        stale_bg = page.evaluate("() => getComputedStyle(document.getElementById('stale')).backgroundColor")
        assert stale_bg == rgb(COLOUR["red"])
        clock = page.inner_text("#clock")
        assert beijing().strftime("%H:%M") in clock or beijing().strftime("%H") in clock.split(":")[0], clock
        browser.close()
