"""WeCom group robot against a local server answering as WeCom does."""

from __future__ import annotations

import pytest

from alerts.channels.base import DeliveryError, Target
from alerts.channels.wecom import WeComChannel
from alerts.roster import Person
from tests.alerts.channels.receivers import WeComRobot

ZHANG = Person(name="张三", wecom="13800000001")
LI = Person(name="李四", phone="0719-1")  # no WeCom mobile: not @-mentioned


def test_markdown_then_text_with_mentioned_mobiles(wecom: WeComRobot, message) -> None:  # type: ignore[no-untyped-def]
    ch = WeComChannel(Target(id="w", kind="wecom", url=wecom.robot_url))
    ch.send(message, [ZHANG, LI])
    got = wecom.wait_for(2)
    assert [r.body["msgtype"] for r in got] == ["markdown", "text"]
    md = got[0].body["markdown"]["content"]
    assert md.startswith("### 【一级·红色预警】燃气告警")
    assert "**岩岭社区 半山尚小区 1栋 管井**" in md
    assert "[查看详情](http://dash.example:8050/alerts/a-0123456789abcdef)" in md
    assert got[1].body["text"]["mentioned_mobile_list"] == ["13800000001"]
    assert "张三" in got[1].body["text"]["content"] and "李四" not in got[1].body["text"]["content"]


def test_group_message_without_anyone_to_mention_is_one_message(wecom: WeComRobot, message) -> None:  # type: ignore[no-untyped-def]
    WeComChannel(Target(id="w", kind="wecom", url=wecom.robot_url)).send(message, [LI])
    assert [r.body["msgtype"] for r in wecom.wait_for(1)] == ["markdown"]


def test_errcode_in_a_200_answer_is_a_failure(wecom: WeComRobot, message) -> None:  # type: ignore[no-untyped-def]
    ch = WeComChannel(Target(id="w", kind="wecom", url=wecom.url + "/cgi-bin/webhook/send?key=wrong"))
    with pytest.raises(DeliveryError, match="errcode 93000: invalid webhook url"):
        ch.send(message, [ZHANG])
    assert wecom.received == [] and len(wecom.rejected) == 1


def test_garbage_answer_is_a_failure(wecom: WeComRobot, message) -> None:  # type: ignore[no-untyped-def]
    wecom.force = {"body": b"<html>502 Bad Gateway</html>"}
    with pytest.raises(DeliveryError, match="not JSON"):
        WeComChannel(Target(id="w", kind="wecom", url=wecom.robot_url)).send(message, [])


def test_rate_limit_answer_asks_to_wait(message) -> None:  # type: ignore[no-untyped-def]
    robot = WeComRobot(rate=1)
    try:
        ch = WeComChannel(Target(id="w", kind="wecom", url=robot.robot_url))
        ch.send(message, [])
        with pytest.raises(DeliveryError) as exc:
            ch.send(message, [])
        assert "45009" in exc.value.text and exc.value.rate_limited
    finally:
        robot.close()


def test_long_message_is_cut_to_the_robot_limit(wecom: WeComRobot, message) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    long = replace(message, lines=[*message.lines, "很长的备注" * 600])
    WeComChannel(Target(id="w", kind="wecom", url=wecom.robot_url)).send(long, [])
    content = wecom.wait_for(1)[0].body["markdown"]["content"]
    assert len(content.encode()) <= 4096 and content.endswith("(已截断)")
