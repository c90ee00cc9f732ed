"""Durable, independent delivery from the outbox: cursors per target, restarts, a dead channel
beside a live one, retries and give-up in the timeline, the digest under a robot's rate limit.
All against real local receivers (tests/alerts/channels/receivers.py) and a real SQLite store."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.channels.base import Target
from alerts.delivery import Delivery, RetryPolicy, outbox_path
from alerts.message import Message, Places
from alerts.notify import Notifier
from alerts.roster import Person
from alerts.store import AlertStore
from core.registry import bundled_registry_path, load_registry
from core.timebase import iso
from tests.alerts.channels.conftest import sample_alert
from tests.alerts.channels.receivers import DingTalkRobot, Webhook, WeComRobot, dead_url
from tests.conftest import wait_until

ZHANG = Person(name="张三", pid="zhang", phone="13800000001", wecom="13800000001", dingtalk="13800000001",
               email="zhang@example.cn")
FAST = RetryPolicy(first_s=0.05, max_s=0.2, give_up_s=3600)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "var" / "alerts" / "alerts.sqlite")
    yield s
    s.close()


@pytest.fixture
def robots() -> Iterator[tuple[WeComRobot, Webhook]]:
    w, h = WeComRobot(), Webhook()
    yield w, h
    w.close()
    h.close()


def recorder(store: AlertStore):  # type: ignore[no-untyped-def]
    return lambda aid, ev, data: store.record(aid, ev, iso(time.time()), by="system", data=data)


def notifier(data: Path) -> Notifier:
    return Notifier(outbox_path(data), Places(load_registry(bundled_registry_path()).get), "http://dash:8050")


def raise_n(n: Notifier, count: int, prefix: str = "a-") -> list[str]:
    ids = []
    for i in range(count):
        a = sample_alert(alert_id=f"{prefix}{i:04d}")
        n.notify(a, "raised", 1, [ZHANG])
        ids.append(a.alert_id)
    return ids


def ids_of(received, key="alert_id") -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for r in received:
        b = r.body
        if b.get("msgtype") == "markdown":
            link = b["markdown"].get("content") or b["markdown"].get("text")
            out += [x.split(")")[0] for x in link.split("/alerts/")[1:]]
        elif key in b:
            out.append(b[key])
    return out


def test_every_target_gets_each_notification_once_and_the_timeline_says_so(
        tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    wecom, hook = robots
    data = tmp_path / "var"
    d = Delivery(data, [Target("wecom", "wecom", wecom.robot_url), Target("hook", "webhook", hook.url)],
                 record=recorder(store), policy=FAST)
    d.start()
    try:
        ids = raise_n(notifier(data), 3)
        assert len(hook.wait_for(3)) == 3
        md = [r for r in wecom.wait_for(6) if r.body["msgtype"] == "markdown"]
        assert sorted(ids_of(md)) == ids and sorted(ids_of(hook.received)) == ids
        time.sleep(0.3)
        assert len(hook.received) == 3 and len(wecom.received) == 6  # nothing twice
    finally:
        d.stop()
    assert stat.S_IMODE(outbox_path(data).stat().st_mode) == 0o600
    steps = [s for s in store.timeline("a-0000") if s.event == "notified"]
    assert {(s.data["channel"], s.data["person"], s.data["delivered"]) for s in steps} == {
        ("wecom", "张三", True), ("hook", "张三", True)}


def test_restart_sends_what_was_pending_exactly_once_per_target(
        tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    wecom, hook = robots
    data = tmp_path / "var"
    n = notifier(data)
    targets = [Target("wecom", "wecom", wecom.robot_url), Target("hook", "webhook", dead_url())]
    d = Delivery(data, targets, record=recorder(store), policy=FAST)
    d.start()
    ids = raise_n(n, 4)
    assert len(wecom.wait_for(8)) == 8  # the robot got them; the webhook is down
    time.sleep(0.3)
    d.stop()
    assert d.workers["hook"].delivered == 0 and d.workers["hook"].failed_attempts >= 4
    more = raise_n(n, 2, prefix="b-")  # written while nothing runs
    # Restarted with the webhook back (same target id, so the same cursor).
    d2 = Delivery(data, [targets[0], Target("hook", "webhook", hook.url)], record=recorder(store), policy=FAST)
    d2.start()
    try:
        assert sorted(ids_of(hook.wait_for(6))) == ids + more
        assert len(wecom.wait_for(12)) == 12
        time.sleep(0.5)
        md = [r for r in wecom.received if r.body["msgtype"] == "markdown"]
        assert sorted(ids_of(md)) == ids + more  # each exactly once, not re-sent after the restart
        assert len(hook.received) == 6
    finally:
        d2.stop()
    failed = [s for s in store.timeline("a-0000") if s.event == "notified" and not s.data["delivered"]]
    assert failed and failed[0].data["channel"] == "hook" and "ConnectionError" in failed[0].data["error"]


def test_a_dead_endpoint_does_not_delay_another_channel(tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    wecom, _ = robots
    hung = Webhook("hang")
    data = tmp_path / "var"
    d = Delivery(data, [Target("hung", "webhook", hung.url), Target("wecom", "wecom", wecom.robot_url)],
                 record=recorder(store), policy=FAST, timeout_s=5.0)
    d.start()
    try:
        n = notifier(data)
        lat = []
        for i in range(5):
            t0 = time.time()
            raise_n(n, 1, prefix=f"c{i}-")
            got = wecom.wait_for(2 * (i + 1), timeout=5)
            assert len(got) >= 2 * (i + 1)
            lat.append(got[2 * i].at - t0)
        # Were the robot behind the hanging webhook, each would wait out its 5 s timeout; the margin is for
        # a loaded test machine (the latency figure itself is bench/bench_notify.py's).
        assert max(lat) < 2.5, lat
        assert hung.attempts >= 1
    finally:
        d.stop(join_s=0.1)
        hung.close()


def test_failures_are_retried_with_backoff_recorded_and_given_up(tmp_path: Path, store: AlertStore) -> None:
    hook = Webhook("error")
    data = tmp_path / "var"
    d = Delivery(data, [Target("hook", "webhook", hook.url)], record=recorder(store),
                 policy=RetryPolicy(first_s=0.1, max_s=0.4, give_up_s=1.5))
    d.start()
    try:
        raise_n(notifier(data), 1)
        w = d.workers["hook"]
        deadline = time.monotonic() + 10
        while (w.given_up == 0 or w.pending) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.given_up == 1 and not w.pending and w.is_alive()
    finally:
        d.stop()
        hook.close()
    steps = [s.data for s in store.timeline("a-0000") if s.event == "notified"]
    assert len(steps) >= 4 and all(not s["delivered"] and s["error"].startswith("HTTP 500") for s in steps)
    gaps = [s["retry_in_s"] for s in steps if "retry_in_s" in s]
    assert gaps[:3] == [0.1, 0.2, 0.4]  # doubling, capped
    assert steps[-1].get("gave_up") is True


@pytest.mark.parametrize("mode", ["garbage", "hang"])
def test_garbage_and_timeouts_are_recorded_failures_then_delivered(
        mode: str, tmp_path: Path, store: AlertStore) -> None:
    hook = Webhook(mode)
    data = tmp_path / "var"
    d = Delivery(data, [Target("hook", "webhook", hook.url)], record=recorder(store), policy=FAST, timeout_s=0.3)
    d.start()
    try:
        raise_n(notifier(data), 1)
        w = d.workers["hook"]
        deadline = time.monotonic() + 10
        while w.failed_attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.failed_attempts >= 2 and w.is_alive()
        hook.mode = "ok"  # the far end recovers
        assert ids_of(hook.wait_for(1)) == ["a-0000"]
    finally:
        d.stop()
        hook.close()
    steps = [s.data for s in store.timeline("a-0000") if s.event == "notified"]
    assert not steps[0]["delivered"] and steps[-1]["delivered"]


def test_past_the_robot_limit_one_digest_carries_them_all(tmp_path: Path, store: AlertStore) -> None:
    """25 notifications pending for a robot that takes 20 a minute: one digest, nothing refused, none dropped."""
    robot = DingTalkRobot()  # enforces 20/min, then blocks 10 min
    data = tmp_path / "var"
    d = Delivery(data, [Target("ding", "dingtalk", robot.robot_url, secret=robot.secret)],
                 record=recorder(store), policy=FAST)
    try:
        ids = raise_n(notifier(data), 25)
        d.start()
        got = robot.wait_for(1)
        time.sleep(0.3)
        assert len(robot.received) == 1 and robot.rejected == []
        text = got[0].body["markdown"]["text"]
        assert "25 条告警通知" in text and sorted(ids_of(got)) == ids
        assert "@13800000001" in text and got[0].body["at"]["atMobiles"] == ["13800000001"]
    finally:
        d.stop()
        robot.close()
    last = [s.data for s in store.timeline("a-0024") if s.event == "notified"]
    assert last == [last[0]] and last[0]["delivered"] and last[0]["digest"]


def test_a_burst_is_sent_one_by_one_within_the_limit_then_as_a_digest(tmp_path: Path, store: AlertStore) -> None:
    robot = WeComRobot(rate=4, window_s=2.0)  # a small window, so the test waits seconds, not a minute
    data = tmp_path / "var"
    d = Delivery(data, [Target("wecom", "wecom", robot.robot_url, rate_count=4, rate_window_s=2.0)],
                 record=recorder(store), policy=FAST)
    d.start()
    try:
        n = notifier(data)
        ids = []
        for i in range(6):
            ids += raise_n(n, 1, prefix=f"d{i}-")
            time.sleep(0.05)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and sorted(set(ids_of(
                [r for r in robot.received if r.body["msgtype"] == "markdown"]))) != sorted(ids):
            time.sleep(0.1)
        md = [r for r in robot.received if r.body["msgtype"] == "markdown"]
        assert sorted(ids_of(md)) == sorted(ids)  # every one, once
        assert robot.rejected == []  # never past the robot's limit
        assert any("条告警通知" in r.body["markdown"]["content"] for r in md)  # the rest as a digest
    finally:
        d.stop()
        robot.close()


def test_robot_saying_too_fast_holds_off_then_sends_a_digest(tmp_path: Path, store: AlertStore) -> None:
    robot = WeComRobot(rate=1, window_s=1.0)  # stricter than we were told
    data = tmp_path / "var"
    d = Delivery(data, [Target("wecom", "wecom", robot.robot_url, rate_count=0, blocked_s=1.0)],
                 record=recorder(store), policy=FAST)
    d.start()
    try:
        ids = raise_n(notifier(data), 3)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and len(set(ids_of(robot.received))) < 3:
            time.sleep(0.1)
        assert sorted(set(ids_of(robot.received))) == ids
        assert any(r.body.get("msgtype") == "markdown" for r in robot.rejected)  # it did say 45009
    finally:
        d.stop()
        robot.close()
    errs = [s.data["error"] for s in store.timeline("a-0001") if s.event == "notified" and not s.data["delivered"]]
    assert errs and "45009" in errs[0]


def test_a_torn_or_garbage_line_is_skipped_not_fatal(tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    _, hook = robots
    data = tmp_path / "var"
    d = Delivery(data, [Target("hook", "webhook", hook.url)], record=recorder(store), policy=FAST)
    with outbox_path(data).open("ab") as fh:
        fh.write(b'{"not": "a notification"}\nnot json at all\n[1, 2]\n{"to": "zhang", "message": {}}\n'
                 b'{"to": [1], "message": 7}\n{"torn": ')  # poison lines, and a crash mid-write
    n = notifier(data)
    d.start()
    try:
        raise_n(n, 2)
        assert sorted(ids_of(hook.wait_for(2))) == ["a-0000", "a-0001"]
        assert d.workers["hook"].is_alive()
    finally:
        d.stop()


def test_another_process_queues_a_message_to_one_person(tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    """The dispatch interface: `alerts.channels.send_to_person` from another process (the dashboard)."""
    wecom, hook = robots
    data = tmp_path / "var"
    d = Delivery(data, [Target("wecom", "wecom", wecom.robot_url), Target("sms", "sms", hook.url)],
                 record=recorder(store), policy=FAST)
    d.start()
    try:
        code = (
            "from core.settings import load_settings\n"
            "from alerts.channels import send_to_person\n"
            f"s = load_settings({{}}, data_dir={str(data)!r})\n"
            "print(send_to_person(s, {'name': '燃气公司 王工', 'phone': '13700000009', 'wecom': '13700000009'},\n"
            "    '请到 岩岭社区 半山尚小区 1栋 管井 处置燃气泄漏', 'http://dash:8050/d/abc', alert_id='a-x',\n"
            "    community='yanling', title='【派单】燃气泄漏 请于 30 分钟内到场'))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2])
        assert len(out.stdout.strip()) == 32
        [sms] = hook.wait_for(1)
        assert sms.body["to"] == [{"name": "燃气公司 王工", "phone": "13700000009"}]
        assert "半山尚小区" in sms.body["text"] and "http://dash:8050/d/abc" in sms.body["text"]
        got = wecom.wait_for(2)
        assert got[1].body["text"]["mentioned_mobile_list"] == ["13700000009"]
    finally:
        d.stop()
    assert {s.data["channel"] for s in store.timeline("a-x") if s.event == "notified"} == {"wecom", "sms"}


def test_a_digest_never_cuts_notifications_off_it_sends_the_rest_next(tmp_path: Path, store: AlertStore) -> None:
    """60 pending for a WeCom robot (4096-byte messages) allowing 3 sends: digests that fit, none cut."""
    robot = WeComRobot(rate=3, window_s=1.5)
    data = tmp_path / "var"
    d = Delivery(data, [Target("wecom", "wecom", robot.robot_url, rate_count=3, rate_window_s=1.5)],
                 record=recorder(store), policy=FAST)
    try:
        ids = raise_n(notifier(data), 60)
        d.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(set(ids_of(robot.received))) < 60:
            time.sleep(0.1)
        md = [r for r in robot.received if r.body["msgtype"] == "markdown"]
        assert sorted(ids_of(md)) == ids  # every one exactly once across the digests
        assert len(md) >= 3 and all("(已截断)" not in r.body["markdown"]["content"] for r in md)
        assert robot.rejected == []
    finally:
        d.stop()
        robot.close()


def test_notifications_older_than_the_give_up_time_are_recorded_not_sent(tmp_path: Path, store: AlertStore,
                                                                         robots) -> None:  # type: ignore[no-untyped-def]
    _, hook = robots
    data = tmp_path / "var"
    d = Delivery(data, [Target("hook", "webhook", hook.url)], record=recorder(store),
                 policy=RetryPolicy(0.05, 0.2, give_up_s=3600))
    n = notifier(data)
    old = Message(title="旧", place="", alert_id="a-old")
    n.outbox.append({"at": time.time() - 7200, "event": "raised", "to": [ZHANG.as_json()], "alert_id": "a-old",
                     "message": old.as_json()})  # written two hours ago, never tried (the target was away)
    d.start()
    try:
        raise_n(n, 1)
        assert ids_of(hook.wait_for(1)) == ["a-0000"]
        time.sleep(0.3)
        assert len(hook.received) == 1
    finally:
        d.stop()
    [step] = [s.data for s in store.timeline("a-old") if s.event == "notified"]
    assert step["gave_up"] and step["error"] == "expired before it could be sent"


def test_the_outbox_is_compacted_once_every_target_has_finished(tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    wecom, hook = robots
    data = tmp_path / "var"
    targets = [Target("wecom", "wecom", wecom.robot_url), Target("hook", "webhook", hook.url)]
    d = Delivery(data, [*targets, Target("dead", "webhook", dead_url())], record=recorder(store), policy=FAST)
    d.start()
    n = notifier(data)
    try:
        ids = raise_n(n, 3)
        assert len(hook.wait_for(3)) == 3
        time.sleep(0.3)
        assert not d.compact(min_bytes=1)  # the dead target still has them pending: nothing moves
        d.configure(targets)  # the dead one is taken out of the configuration
        assert wait_until(lambda: d.compact(min_bytes=1), 5)
        assert outbox_path(data).stat().st_size == 0 and (data / "alerts" / "outbox.jsonl.1").exists()
        assert stat.S_IMODE(outbox_path(data).stat().st_mode) == 0o600
        assert not (data / "alerts" / "cursors" / "dead.json").exists()
        more = raise_n(n, 2, prefix="b-")
        assert sorted(ids_of(hook.wait_for(5))) == ids + more
    finally:
        d.stop()
    d2 = Delivery(data, targets, record=recorder(store), policy=FAST)  # a restart after compaction
    d2.start()
    try:
        time.sleep(0.5)
        assert len(hook.received) == 5 and len(wecom.received) == 10  # nothing sent again
    finally:
        d2.stop()


@pytest.mark.slow
def test_twenty_a_minute_for_real(tmp_path: Path, store: AlertStore) -> None:
    """The real limits over a real minute: 30 alerts within 10 s to a DingTalk robot (20/min, then blocked
    10 min) and a WeCom robot (20/min): 20 single messages, then one digest with the rest after the minute."""
    ding, wecom = DingTalkRobot(), WeComRobot()
    data = tmp_path / "var"
    d = Delivery(data, [Target("ding", "dingtalk", ding.robot_url, secret=ding.secret),
                        Target("wecom", "wecom", wecom.robot_url)], record=recorder(store), policy=FAST)
    d.start()
    try:
        n = notifier(data)
        ids = []
        for i in range(30):
            ids += raise_n(n, 1, prefix=f"r{i:02d}-")
            time.sleep(0.33)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(set(ids_of(ding.received))) < 30
                                               or len(set(ids_of(wecom.received))) < 30):
            time.sleep(0.5)
        assert sorted(ids_of(ding.received)) == sorted(ids) and ding.rejected == []
        md = [r for r in wecom.received if r.body["msgtype"] == "markdown"]
        assert sorted(ids_of(md)) == sorted(ids) and wecom.rejected == []
        assert any("条告警通知" in r.body["markdown"]["text"] for r in ding.received)
        assert len(ding.received) <= 21
    finally:
        d.stop()
        ding.close()
        wecom.close()


def test_one_process_delivers_the_others_only_append(tmp_path: Path, store: AlertStore, robots) -> None:  # type: ignore[no-untyped-def]
    """A second engine on the same data folder must not send everything a second time."""
    _, hook = robots
    data = tmp_path / "var"
    code = ("import sys, time\nfrom alerts.channels.base import Target\nfrom alerts.delivery import Delivery\n"
            f"d = Delivery(__import__('pathlib').Path({str(data)!r}), [Target('hook', 'webhook', {hook.url!r})])\n"
            "d.start(); print('started', flush=True); sys.stdin.read(); d.stop()\n")
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "started"
        d = Delivery(data, [Target("hook", "webhook", hook.url)], record=recorder(store), policy=FAST)
        d.start()
        assert not any(w.is_alive() for w in d.workers.values())  # passive: the other one delivers
        raise_n(notifier(data), 2)
        assert sorted(ids_of(hook.wait_for(2))) == ["a-0000", "a-0001"]
        other.communicate("", timeout=10)  # the delivering process ends ...
        d.start()  # ... and this one takes over (the service calls start() every second)
        assert all(w.is_alive() for w in d.workers.values())
        raise_n(notifier(data), 1, prefix="b-")
        assert sorted(ids_of(hook.wait_for(3))) == ["a-0000", "a-0001", "b-0000"]
        time.sleep(0.3)
        assert len(hook.received) == 3
        d.stop()
    finally:
        if other.poll() is None:
            other.kill()
