"""Upward reporting to the district/city platform, against a real local HTTP platform that checks
signatures, time and replays as alerts/channels/upward.py documents, through the real outbox."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from alerts.channels.base import Target
from alerts.channels.config import parse_channels
from alerts.channels.upward import MAX_SKEW_S, Refused, UpwardChannel, sign, verify
from alerts.configfile import ConfigError
from alerts.delivery import Delivery
from alerts.store import AlertStore
from tests.alerts.channels.conftest import sample_alert
from tests.alerts.test_delivery import FAST, ZHANG, notifier, recorder

SECRET = "district-shared-secret-0123456789"


class Platform:
    """The district platform's receiving end: keeps each verified report once, answers 401/409 as
    documented. `lose_answers`: how many first answers to drop after keeping (a 500 after a commit)."""

    def __init__(self, lose_answers: int = 0) -> None:
        self.kept: list[dict[str, Any]] = []
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.refused: list[int] = []
        self.seen: dict[str, float] = {}
        self.lose = lose_answers
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()}
                with owner.lock:
                    owner.raw.append((headers, body))
                    try:
                        doc = verify(SECRET, headers, body, owner.seen)
                        owner.kept.append(doc)
                        status = 500 if owner.lose > 0 else 200
                        owner.lose -= 1
                    except Refused as r:
                        owner.refused.append(r.status)
                        status = r.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/report"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = Platform()
    yield p
    p.close()


def channel(url: str) -> UpwardChannel:
    return UpwardChannel(Target(id="district", kind="upward", url=url, secret=SECRET,
                                options={"source": "zhangwan-checheng"}))


def test_a_report_is_signed_and_carries_the_incident(platform: Platform, message) -> None:  # type: ignore[no-untyped-def]
    channel(platform.url).send(message, [ZHANG], alert=sample_alert().as_json())
    [doc] = platform.kept
    assert doc["schema"] == "sc.incident/1" and doc["source"] == "zhangwan-checheng"
    inc = doc["incident"]
    assert (inc["alert_id"], inc["severity"], inc["level"], inc["community_name"]) == (
        "a-0123456789abcdef", "red", "一级", "岩岭社区")
    assert doc["text"].startswith("【一级·红色预警】") and doc["place"] == "岩岭社区 半山尚小区 1栋 管井"
    headers, _ = platform.raw[0]
    assert headers["X-SC-Event-Id"] == doc["event_id"] and headers["X-SC-Signature"].startswith("sha256=")


def test_tampering_an_old_request_and_a_replay_are_refused(platform: Platform, message) -> None:  # type: ignore[no-untyped-def]
    channel(platform.url).send(message, [ZHANG], alert=sample_alert().as_json())
    headers, body = platform.raw[0]
    post = lambda h, b: requests.post(platform.url, data=b, headers=h, timeout=5).status_code  # noqa: E731
    assert post(headers, body) == 409  # the same request again: already kept
    assert post(headers, body.replace(b"\xe4\xb8\x80\xe7\xba\xa7", b"\xe4\xba\x8c\xe7\xba\xa7")) == 401  # 一级 → 二级
    old = str(int(time.time() - MAX_SKEW_S - 60))
    doc = orjson.loads(body)
    doc["event_id"] = "fresh-id"
    b2 = orjson.dumps(doc)
    assert post({**headers, "X-SC-Timestamp": old, "X-SC-Event-Id": "fresh-id",
                 "X-SC-Signature": sign(SECRET, old, b2)}, b2) == 401  # signed right, but too old
    assert post({**headers, "X-SC-Signature": sign("another-secret-0123456789", headers["X-SC-Timestamp"], body)},
                body) == 401
    assert len(platform.kept) == 1 and platform.refused == [409, 401, 401, 401]


def test_red_and_orange_go_up_work_orders_and_lesser_alerts_do_not(platform: Platform) -> None:
    ch = channel(platform.url)
    assert ch.wants("raised", "yanhu", "red", []) and ch.wants("resolved", "yanhu", "orange", [])
    assert not ch.wants("raised", "yanhu", "yellow", []) and not ch.wants("raised", "yanhu", "blue", [])
    assert not ch.wants("dispatch", "yanhu", "red", [])
    chosen = UpwardChannel(Target(id="d", kind="upward", url=platform.url, secret=SECRET,
                                  severities=frozenset({"yellow"})))
    assert chosen.wants("raised", "yanhu", "yellow", [])  # a platform that asks for more gets it


def test_through_the_outbox_each_report_is_kept_once_even_when_an_answer_is_lost(tmp_path: Path) -> None:
    platform = Platform(lose_answers=1)  # the first report is kept, but its answer is a 500
    store = AlertStore(tmp_path / "var" / "alerts" / "alerts.sqlite")
    data = tmp_path / "var"
    d = Delivery(data, [Target(id="district", kind="upward", url=platform.url, secret=SECRET)],
                 record=recorder(store), policy=FAST)
    d.start()
    try:
        n = notifier(data)
        red = sample_alert(alert_id="a-red")
        n.notify(red, "raised", 1, [ZHANG])
        n.notify(sample_alert(alert_id="a-yellow", severity="yellow"), "raised", 1, [ZHANG])
        n.notify(dataclasses.replace(red, state="resolved", resolved_at="2026-11-29T03:30:00Z"), "resolved", 1,
                 [ZHANG])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(platform.kept) < 2 or d.workers["district"].delivered < 2):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        d.stop()
        platform.close()
        store.close()
    assert [(k["event"], k["incident"]["alert_id"]) for k in platform.kept] == [("raised", "a-red"),
                                                                                   ("resolved", "a-red")]
    assert platform.refused == [409]  # the retry of the lost answer: recognised, counted as delivered


def test_an_upward_target_needs_an_http_url_and_a_real_secret(tmp_path: Path) -> None:
    f = tmp_path / "channels.yaml"
    f.write_text("channels:\n  - id: district\n    kind: upward\n    url: http://127.0.0.1:9/report\n"
                 "    secret: short\n    source: zhangwan-checheng\n")
    with pytest.raises(ConfigError, match="secret"):
        parse_channels(f)
    f.write_text(f"channels:\n  - id: district\n    kind: upward\n    url: mqtt://127.0.0.1:9\n    secret: {SECRET}\n")
    with pytest.raises(ConfigError, match="http"):
        parse_channels(f)
    f.write_text(f"channels:\n  - id: district\n    kind: upward\n    url: http://127.0.0.1:9/r\n    secret: {SECRET}\n"
                 "    source: zhangwan-checheng\n")
    [t] = parse_channels(f)
    assert t.options == {"source": "zhangwan-checheng"}
