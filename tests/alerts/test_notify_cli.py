"""`smartcommunity notify test`: a test message through one channel, exactly as an alert goes;
exit 0 on delivery, non-zero with the channel's own error text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.channels.receivers import DingTalkRobot, MailServer, Webhook, WeComRobot, smtp_server

ROOT = Path(__file__).resolve().parents[2]


def notify_test(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_DATA_DIR=str(tmp / "var"), SC_PUBLIC_URL="http://10.1.2.3:8050", SC_NOTIFY_TIMEOUT_S="2")
    return subprocess.run([sys.executable, "-m", "smartcommunity.cli", "notify", "test", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailServer]:
    yield from smtp_server(tmp_path, starttls=False, refuse={"nobody@example.cn"})


def test_wecom(tmp_path: Path) -> None:
    robot = WeComRobot()
    try:
        r = notify_test(tmp_path, "--channel", "wecom", "--url", robot.robot_url, "--to", "13800000001")
        assert r.returncode == 0, r.stderr
        md, text = robot.wait_for(2)
        content = md.body["markdown"]["content"]
        assert "测试消息" in content and "【一级·红色预警】燃气告警" in content
        assert "岩岭社区 半山尚小区" in content and "http://10.1.2.3:8050/alerts/" in content
        assert text.body["text"]["mentioned_mobile_list"] == ["13800000001"]
        bad = notify_test(tmp_path, "--channel", "wecom", "--url", robot.url + "/cgi-bin/webhook/send?key=x")
        assert bad.returncode == 1 and "errcode 93000: invalid webhook url" in bad.stderr
    finally:
        robot.close()


def test_dingtalk_signature(tmp_path: Path) -> None:
    robot = DingTalkRobot(secret="SECright")
    try:
        ok = notify_test(tmp_path, "--channel", "dingtalk", "--url", robot.robot_url, "--secret", "SECright")
        assert ok.returncode == 0, ok.stderr
        assert "测试消息" in robot.wait_for(1)[0].body["markdown"]["title"]
        bad = notify_test(tmp_path, "--channel", "dingtalk", "--url", robot.robot_url, "--secret", "SECwrong")
        assert bad.returncode == 1
        assert "DingTalk errcode 310000: sign not match" in bad.stderr
    finally:
        robot.close()


def test_email(tmp_path: Path, mail: MailServer) -> None:
    url = f"smtp://127.0.0.1:{mail.port}"
    ok = notify_test(tmp_path, "--channel", "email", "--url", url, "--to", "duty@example.cn")
    assert ok.returncode == 0, ok.stderr
    assert mail.wait_for(1)[0].rcpts == ["duty@example.cn"]
    bad = notify_test(tmp_path, "--channel", "email", "--url", url, "--to", "nobody@example.cn")
    assert bad.returncode == 1 and "nobody@example.cn 550" in bad.stderr
    assert notify_test(tmp_path, "--channel", "email", "--url", url).returncode == 2  # --to is required


def test_webhook_garbage_and_ok(tmp_path: Path) -> None:
    hook = Webhook("garbage")
    try:
        bad = notify_test(tmp_path, "--channel", "webhook", "--url", hook.url)
        assert bad.returncode == 1 and "not delivered" in bad.stderr
        hook.mode = "ok"
        assert notify_test(tmp_path, "--channel", "webhook", "--url", hook.url).returncode == 0
        assert hook.wait_for(1)[0].body["alert"]["severity"] == "red"
    finally:
        hook.close()


def test_status_shows_how_far_behind_each_target_is(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import orjson

    from alerts.channels.base import Target
    from alerts.delivery import Delivery, RetryPolicy
    from smartcommunity.cli import main
    from tests.alerts.channels.receivers import dead_url

    for k in [k for k in os.environ if k.startswith("SC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    d = Delivery(tmp_path / "var", [Target("down", "webhook", dead_url())], policy=RetryPolicy(5, 5, 3600))
    d.outbox.append({"event": "raised", "to": [], "message": {"title": "t", "place": ""}})
    d.start()
    try:
        assert main(["notify", "status"]) == 0
    finally:
        d.stop()
    out = orjson.loads(capsys.readouterr().out)
    assert out["cursors"]["down"]["behind_bytes"] == out["outbox_bytes"] > 0
