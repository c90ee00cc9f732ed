"""The demo's local inbox (alerts/inbox.py) as `make demo` runs it: a real `smartcommunity demo-inbox`
process, reached by the real WeCom, DingTalk and SMS channel code through the demo's channels file."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from alerts.channels import load_targets, queue_message
from alerts.channels.base import DeliveryError, Target
from alerts.channels.config import make_channel, parse_channels
from alerts.delivery import Delivery, RetryPolicy
from alerts.inbox import DINGTALK_PATH, SMS_PATH, WECOM_PATH, InboxStore, Received, demo_channels, inbox_path
from alerts.message import Message
from alerts.roster import Person
from core.settings import Settings
from smartcommunity.services import free_port
from tests.conftest import make_settings, wait_until

LS_DUTY = Person(name="蓝山郡社区值班员", phone="0719-8000301", wecom="13900000301", dingtalk="13900000301")
CENTER = Person(name="车城路街道指挥中心值班长", phone="0719-8000001", wecom="13900000001")


def leak_message(alert_id: str = "a-0123456789ab") -> Message:
    return Message(title="【一级·红色预警】燃气告警 新告警", place="蓝山郡社区 半山尚小区 1栋 厨房",
                   lines=["燃气浓度超限：燃气浓度 31 %LEL ≥ 25 %LEL", "设备编号: G-000123"],
                   link=f"http://127.0.0.1:8050/alerts/{alert_id}", severity="red", alert_id=alert_id, event="raised")


@dataclass
class Receiver:
    settings: Settings
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.demo_inbox_port}"

    def count(self) -> int:
        return int(requests.get(f"{self.base}/health", timeout=5).json()["messages"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


def start_receiver(settings: Settings) -> Receiver:
    """`smartcommunity demo-inbox` as the demo's supervisor starts it, answering on its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")} | settings.env()
    proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", "demo-inbox"], env=env,
                            stdin=subprocess.DEVNULL)
    r = Receiver(settings, proc)

    def up() -> bool:
        assert proc.poll() is None, f"demo-inbox exited with {proc.returncode}"
        try:
            r.count()
            return True
        except requests.ConnectionError:
            return False

    assert wait_until(up, timeout=30), "the receiver never answered"
    return r


def demo_settings(data: Path, port: int | None = None) -> Settings:
    """Settings as `smartcommunity demo` gives its parts: the channels file pointing at the inbox."""
    port = port or free_port()
    return make_settings(data, demo_inbox_port=port, alerts_channels_file=str(demo_channels(data, port)))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = start_receiver(demo_settings(tmp_path / "var"))
    yield r
    r.stop()


def send_all(settings: Settings, message: Message, people: list[Person]) -> dict[str, str | None]:
    out = {}
    for t in load_targets(settings):
        ch = make_channel(t)
        try:
            out[t.kind] = ch.send(message, people)
        finally:
            ch.close()
    return out


def test_the_demo_channels_file_points_the_three_channels_at_loopback(tmp_path: Path) -> None:
    s = demo_settings(tmp_path / "var", port=45678)
    targets = parse_channels(Path(s.alerts_channels_file or ""))  # the real parser accepts it
    assert sorted(t.kind for t in targets) == ["dingtalk", "sms", "wecom"]
    assert all((t.url or "").startswith("http://127.0.0.1:45678/") for t in targets)
    assert next(t for t in targets if t.kind == "dingtalk").secret  # signed, as a real robot is
    for f in (Path(s.alerts_channels_file or ""), tmp_path / "var" / "demo" / "dingtalk.secret"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_real_channels_reach_the_inbox_as_each_recipient_sees_it(receiver: Receiver) -> None:
    msg = leak_message()
    assert send_all(receiver.settings, msg, [LS_DUTY, CENTER]) == {"wecom": None, "dingtalk": None, "sms": None}
    store = InboxStore(inbox_path(receiver.settings.data_path))
    try:
        got = store.recent()
        # WeCom: the markdown alert and the @-mention text; DingTalk: one markdown; SMS: one per phone.
        assert sorted(m.channel for m in got) == ["dingtalk", "sms", "sms", "wecom", "wecom"]
        assert [m.id for m in got] == sorted((m.id for m in got), reverse=True)  # newest first
        assert {m.recipient for m in got if m.channel == "sms"} == {"0719-8000301", "0719-8000001"}
        assert {m.name for m in got if m.channel == "sms"} == {LS_DUTY.name, CENTER.name}
        for m in got:
            assert m.alert_id == msg.alert_id, m
            assert msg.title in m.title or msg.title in m.text, m
            assert "蓝山郡社区 半山尚小区" in m.text
        ding = next(m for m in got if m.channel == "dingtalk")
        assert ding.markdown and ding.title == msg.title and ding.mentions == ("13900000301",)
        mention = next(m for m in got if m.channel == "wecom" and not m.markdown)
        assert set(mention.mentions) == {"13900000301", "13900000001"} and LS_DUTY.name in mention.text
        sms = next(m for m in got if m.channel == "sms")
        assert not sms.markdown and sms.text == msg.plain()  # the gateway's text, as the phone shows it
        assert [(c, r) for c, r, _n, _k in store.recipients()][:1] in ([("sms", "0719-8000301")],
                                                                        [("sms", "0719-8000001")])
    finally:
        store.close()
    path = inbox_path(receiver.settings.data_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds phone numbers
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_delivery_from_the_outbox_is_recorded_as_delivered(receiver: Receiver) -> None:
    steps: list[tuple[str, str, dict[str, Any]]] = []
    lock = threading.Lock()

    def record(alert_id: str, event: str, data: dict[str, Any]) -> None:
        with lock:
            steps.append((alert_id, event, data))

    s = receiver.settings
    d = Delivery(s.data_path, load_targets(s), record=record, policy=RetryPolicy(first_s=0.2, max_s=1.0))
    d.start()
    try:
        queue_message(s, [LS_DUTY], "燃气浓度超限，请到场处置", "http://127.0.0.1:8050/d/x",
                      title="【派单】请处置", alert_id="a-dispatch0001", community="lanshanjun", severity="red")
        assert wait_until(lambda: {x[2]["kind"] for x in list(steps)} >= {"wecom", "dingtalk", "sms"}, timeout=20)
    finally:
        d.stop()
    assert all(x[1] == "notified" and x[2]["delivered"] and not x[2]["error"] for x in steps), steps
    assert receiver.count() == 4  # WeCom markdown + mention, DingTalk, one SMS


@pytest.mark.parametrize(("path", "body", "says"), [
    (SMS_PATH, b"not json at all", "not JSON"),
    (SMS_PATH, b"", "empty body"),
    (SMS_PATH, b'{"text": "hi"}', "`to`"),
    (SMS_PATH, b'{"to": [{"name": "x"}], "text": "hi"}', "`phone`"),
    (SMS_PATH, b"[1, 2]", "JSON object"),
    (f"{WECOM_PATH}?key=demo-duty-group", b'{"msgtype": "image"}', "unknown msgtype"),
    (f"{WECOM_PATH}?key=demo-duty-group", b'{"msgtype": "markdown", "markdown": {"content": ""}}', "`content`"),
    (f"{WECOM_PATH}?key=demo-duty-group", b'{"msgtype": "text", "text": {"content": "x", '
                                          b'"mentioned_mobile_list": "139"}}', "mentioned_mobile_list"),
])
def test_garbage_is_refused_with_a_clear_400_and_nothing_kept(receiver: Receiver, path: str, body: bytes,
                                                              says: str) -> None:
    r = requests.post(receiver.base + path, data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400, r.text
    assert says in r.json()["errmsg"]
    assert receiver.count() == 0


def test_robots_answer_as_the_real_ones_to_a_wrong_key_or_signature(receiver: Receiver) -> None:
    base = receiver.base
    wrong_key = make_channel(Target("w", "wecom", f"{base}{WECOM_PATH}?key=someone-else"))
    with pytest.raises(DeliveryError, match="errcode 93000"):
        wrong_key.send(leak_message(), [])
    token = f"{base}{DINGTALK_PATH}?access_token=demo-duty-group"
    with pytest.raises(DeliveryError, match="errcode 310000: sign not match"):
        make_channel(Target("d", "dingtalk", token, secret="SECwrong")).send(leak_message(), [])
    with pytest.raises(DeliveryError, match="310000"):
        make_channel(Target("d", "dingtalk", token)).send(leak_message(), [])  # unsigned
    assert receiver.count() == 0


def test_nothing_accepted_is_lost_across_a_restart(tmp_path: Path) -> None:
    s = demo_settings(tmp_path / "var")
    r = start_receiver(s)
    try:
        for i in range(5):
            send_all(s, leak_message(f"a-before{i:04d}"), [LS_DUTY])
        before = r.count()
        assert before == 5 * 4
    finally:
        r.stop(signal.SIGKILL)  # no chance to flush anything: what was answered must be on disk
    r = start_receiver(s)
    try:
        assert r.count() == before
        send_all(s, leak_message("a-after0001"), [LS_DUTY])
        assert r.count() == before + 4
    finally:
        r.stop()
    store = InboxStore(inbox_path(s.data_path))
    try:
        ids = [m.alert_id for m in store.recent(500)]
    finally:
        store.close()
    assert ids[0] == "a-after0001" and {f"a-before{i:04d}" for i in range(5)} <= set(ids)


def test_the_inbox_is_bounded_oldest_first(tmp_path: Path) -> None:
    store = InboxStore(tmp_path / "inbox.sqlite", max_messages=5)
    try:
        for i in range(8):
            store.add([Received("sms", "0719-8000301", "值班员", f"第{i}条", f"第{i}条", False, at=time.time())])
        assert [m.title for m in store.recent()] == [f"第{i}条" for i in range(7, 2, -1)]
        assert store.count() == 5
    finally:
        store.close()
