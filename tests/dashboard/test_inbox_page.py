"""The demo's inbox page (/inbox): what the real channel code sent to the demo's real receiver, as the
WeCom group, the DingTalk group and each phone got it, newest first, linked to the alert; present
(in the navigation too) only when the demo receiver is configured; not for a wall display link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.store import AlertStore, store_path
from core.settings import Settings
from core.timebase import beijing
from dashboard.app import create_app
from dashboard.login import CSRF_COOKIE, CSRF_HEADER
from dashboard.sessions import SessionStore, sessions_path
from dashboard.theme import INBOX_CHANNEL, INBOX_NAV, INBOX_WORDS
from tests.alerts.test_inbox import CENTER, LS_DUTY, Receiver, demo_settings, leak_message, send_all, start_receiver
from tests.conftest import make_settings
from tests.dashboard.pagehelp import ROUTER, find, page_layout, text_of
from tests.dashboard.test_dash_browser import red_alert

OFFLINE = {"mqtt_url": "mqtt://127.0.0.1:9", "influx_url": "http://127.0.0.1:9"}


def inbox_settings(data: Path) -> Settings:
    s = demo_settings(data)
    return make_settings(data, demo_inbox_port=s.demo_inbox_port, alerts_channels_file=s.alerts_channels_file,
                         **OFFLINE)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = start_receiver(inbox_settings(tmp_path / "var"))
    yield r
    r.stop()


def ready(app: Any) -> Any:
    """The app with its base layers loaded (pandas fully imported before plotly's encoder looks for it)."""
    app.server.config["SC_DASHBOARD"].mapdata.layers()
    return app.server.test_client()


def nav_hrefs(client: Any) -> list[str]:
    layout = client.get("/_dash-layout").get_json()
    return [n["props"]["href"] for n in find(layout, lambda n: "nav-link" in str(n["props"].get("className", "")))]


def test_the_inbox_shows_what_each_recipient_got(receiver: Receiver) -> None:
    s = receiver.settings
    store = AlertStore(store_path(s.data_path))
    alert = red_alert(store, s)
    store.close()
    first = leak_message("a-older0000001")
    send_all(s, first, [LS_DUTY])
    msg = leak_message(alert.alert_id)
    send_all(s, msg, [LS_DUTY, CENTER])
    app = create_app(s, live_mqtt=False)
    try:
        c = ready(app)
        assert "/inbox" in nav_hrefs(c)
        assert 'href="/inbox"' in c.get("/report").get_data(as_text=True)  # the served report's title bar too
        layout = page_layout(c, "/inbox")
        text = text_of(layout)
        assert INBOX_WORDS["heading"] in text and INBOX_WORDS["count"].format(n=9) in text
        for label in INBOX_CHANNEL.values():
            assert label in text
        assert f"{LS_DUTY.name} {LS_DUTY.phone}" in text and f"{CENTER.name} {CENTER.phone}" in text
        assert "@13900000301" in text  # the group's @-mention, as the group shows it
        cards = find(layout, lambda n: n["type"] == "Article")
        assert len(cards) == 4 + 5  # (WeCom 2, DingTalk 1, SMS 1) + (WeCom 2, DingTalk 1, SMS 2)
        assert all(msg.title in text_of(cd) for cd in cards[:5])  # newest first: the second alert's on top
        links = [n["props"]["href"] for cd in cards[:5] for n in find(cd, lambda n: n["type"] == "Link")]
        assert links == [f"/alerts/{alert.alert_id}"] * 5  # which alert, linked to its page
        assert "燃气浓度超限" in text_of(cards[0])  # the alert named by its rule's title
        # Times in Beijing time, as the page's one clock: the hour of now in Beijing.
        assert beijing().strftime("%H:") in text_of(cards[0])
        # One recipient only: that phone's SMS.
        body = {"output": "..inbox-list.children...inbox-who.options...inbox-count.children..",
                "outputs": [{"id": "inbox-list", "property": "children"}, {"id": "inbox-who", "property": "options"},
                            {"id": "inbox-count", "property": "children"}],
                "inputs": [{"id": "inbox-tick", "property": "n_intervals", "value": 1},
                           {"id": "inbox-who", "property": "value", "value": f"sms|{CENTER.phone}"}],
                "changedPropIds": ["inbox-who.value"], "state": []}
        r = c.post("/_dash-update-component", json=body)
        assert r.status_code == 200, r.data[:300]
        got = r.get_json()["response"]
        only = find(got["inbox-list"]["children"], lambda n: n["type"] == "Article")
        assert len(only) == 1 and CENTER.phone in text_of(only[0]) and LS_DUTY.phone not in text_of(only[0])
        assert any(o["value"] == f"sms|{CENTER.phone}" for o in got["inbox-who"]["options"])
        assert got["inbox-count"]["children"] == INBOX_WORDS["count"].format(n=1)
    finally:
        app.server.config["SC_DASHBOARD"].close()


def test_no_inbox_page_in_a_deployment(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var", **OFFLINE)
    assert not s.demo_inbox_port
    app = create_app(s, live_mqtt=False)
    try:
        c = ready(app)
        hrefs = nav_hrefs(c)
        assert "/alerts" in hrefs and "/inbox" not in hrefs
        report = c.get("/report").get_data(as_text=True)
        assert 'href="/alerts"' in report and 'href="/inbox"' not in report
        assert INBOX_NAV not in str(c.get("/_dash-layout").get_json())
        assert INBOX_WORDS["heading"] not in text_of(page_layout(c, "/inbox"))  # Dash's not-found page
    finally:
        app.server.config["SC_DASHBOARD"].close()


def test_a_wall_display_link_cannot_read_the_phone_numbers(receiver: Receiver) -> None:
    s = receiver.settings
    send_all(s, leak_message(), [LS_DUTY])
    sessions = SessionStore(sessions_path(s.data_path))
    try:
        _link, token = sessions.new_link("大屏")
    finally:
        sessions.close()
    app = create_app(make_settings(s.data_path, demo_inbox_port=s.demo_inbox_port,
                                   alerts_channels_file=s.alerts_channels_file, api_token="svc", **OFFLINE),
                     live_mqtt=False)
    try:
        c = ready(app)
        assert c.get("/inbox").status_code == 302  # sign-in required, as every page
        assert c.get(f"/display/{token}").status_code == 302
        cookie = c.get_cookie(CSRF_COOKIE)
        assert cookie is not None
        body = {"output": ROUTER, "outputs": [{"id": "_pages_content", "property": "children"},
                                              {"id": "_pages_store", "property": "data"}],
                "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/inbox"},
                           {"id": "_pages_location", "property": "search", "value": ""}],
                "changedPropIds": ["_pages_location.pathname"], "state": []}
        r = c.post("/_dash-update-component", json=body, headers={CSRF_HEADER: cookie.value})
        assert r.status_code == 200, r.data[:300]
        text = text_of(r.get_json()["response"]["_pages_content"]["children"])
        assert INBOX_WORDS["viewer"] in text and LS_DUTY.phone not in text and "13900000301" not in text
    finally:
        app.server.config["SC_DASHBOARD"].close()
