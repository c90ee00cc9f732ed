"""DingTalk custom robot against a local server that verifies the signature as DingTalk does."""

from __future__ import annotations

import urllib.parse

import pytest

from alerts.channels.base import DeliveryError, Target
from alerts.channels.dingtalk import DingTalkChannel, sign
from alerts.roster import Person
from tests.alerts.channels.receivers import DingTalkRobot, dingtalk_sign

WANG = Person(name="王五", dingtalk="13900000002")


def test_signed_markdown_with_at_mobiles(dingtalk: DingTalkRobot, message) -> None:  # type: ignore[no-untyped-def]
    DingTalkChannel(Target(id="d", kind="dingtalk", url=dingtalk.robot_url, secret=dingtalk.secret)).send(
        message, [WANG, Person(name="无钉钉", email="x@y.cn")])
    got = dingtalk.wait_for(1)
    assert len(got) == 1, dingtalk.rejected
    body = got[0].body
    assert body["msgtype"] == "markdown" and body["at"] == {"atMobiles": ["13900000002"], "isAtAll": False}
    assert body["markdown"]["title"].startswith("【一级·红色预警】")
    assert "@13900000002" in body["markdown"]["text"]  # DingTalk highlights only mobiles also in the text
    assert "岩岭社区 半山尚小区 1栋 管井" in body["markdown"]["text"]


def test_sign_matches_the_documented_recipe() -> None:
    # base64(HMAC-SHA256(secret, "timestamp\nsecret")), then URL-encoded
    assert urllib.parse.unquote_plus(sign("SECabc", 1700000000000)) == dingtalk_sign("SECabc", "1700000000000")


def test_wrong_secret_is_errcode_310000(dingtalk: DingTalkRobot, message) -> None:  # type: ignore[no-untyped-def]
    ch = DingTalkChannel(Target(id="d", kind="dingtalk", url=dingtalk.robot_url, secret="SECwrong"))
    with pytest.raises(DeliveryError, match="errcode 310000: sign not match"):
        ch.send(message, [WANG])
    assert dingtalk.received == []


def test_unsigned_request_to_a_signing_robot_fails(dingtalk: DingTalkRobot, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeliveryError, match="310000"):
        DingTalkChannel(Target(id="d", kind="dingtalk", url=dingtalk.robot_url)).send(message, [])


def test_past_20_a_minute_the_robot_blocks(message) -> None:  # type: ignore[no-untyped-def]
    robot = DingTalkRobot(rate=20)
    try:
        ch = DingTalkChannel(Target(id="d", kind="dingtalk", url=robot.robot_url, secret=robot.secret))
        for _ in range(20):
            ch.send(message, [])
        with pytest.raises(DeliveryError) as exc:
            ch.send(message, [])
        assert "130101" in exc.value.text and exc.value.rate_limited
        assert ch.blocked_s() == 600.0  # what the delivery loop waits out before the digest
    finally:
        robot.close()
