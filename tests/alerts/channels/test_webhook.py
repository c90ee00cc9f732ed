"""The generic JSON webhook and the SMS/voice gateway webhook, against real local servers that
answer properly, answer garbage, time out, or fail."""

from __future__ import annotations

import time

import pytest

from alerts.channels.base import DeliveryError, Target
from alerts.channels.sms import SmsGatewayChannel
from alerts.channels.webhook import WebhookChannel
from alerts.roster import Person
from tests.alerts.channels.receivers import Webhook, dead_url

ZHANG = Person(name="张三", phone="13800000001", email="z@example.cn")
NOPHONE = Person(name="李四", email="li@example.cn")


def test_webhook_posts_the_whole_notification(webhook: Webhook, message) -> None:  # type: ignore[no-untyped-def]
    WebhookChannel(Target(id="h", kind="webhook", url=webhook.url + "/hook")).send(
        message, [ZHANG], alert={"alert_id": "a-0123456789abcdef"})
    [r] = webhook.wait_for(1)
    assert r.body["alert_id"] == "a-0123456789abcdef" and r.body["severity"] == "red"
    assert r.body["place"] == "岩岭社区 半山尚小区 1栋 管井"
    assert r.body["link"] == "http://dash.example:8050/alerts/a-0123456789abcdef"
    assert r.body["to"][0]["name"] == "张三" and r.body["alert"]["alert_id"] == "a-0123456789abcdef"
    assert r.body["text"].count("200 米内") == 1


def test_sms_gateway_gets_phones_and_plain_text(webhook: Webhook, message) -> None:  # type: ignore[no-untyped-def]
    ch = SmsGatewayChannel(Target(id="g", kind="sms", url=webhook.url))
    assert not ch.wants("raised", "yanling", "red", [NOPHONE])  # nobody with a phone: nothing to send
    ch.send(message, [ZHANG, NOPHONE], alert={"state": "active", "community": "yanling", "compound_id": "YL-01"})
    [r] = webhook.wait_for(1)
    assert r.body["to"] == [{"name": "张三", "phone": "13800000001"}]
    assert (r.body["state"], r.body["community"], r.body["compound_id"]) == ("active", "yanling", "YL-01")
    assert r.body["text"].startswith("【一级·红色预警】燃气告警") and "(yanling/" not in r.body["text"]


@pytest.mark.parametrize("mode,error", [("garbage", "ConnectionError|BadStatusLine|RemoteDisconnected"),
                                        ("error", "HTTP 500")])
def test_bad_answers_are_failures(mode: str, error: str, message) -> None:  # type: ignore[no-untyped-def]
    hook = Webhook(mode)
    try:
        with pytest.raises(DeliveryError, match=error):
            WebhookChannel(Target(id="h", kind="webhook", url=hook.url)).send(message, [ZHANG])
        assert hook.attempts == 1
    finally:
        hook.close()


def test_an_endpoint_that_never_answers_times_out(message) -> None:  # type: ignore[no-untyped-def]
    hook = Webhook("hang")
    try:
        t0 = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 0\.5 s"):
            WebhookChannel(Target(id="h", kind="webhook", url=hook.url), timeout_s=0.5).send(message, [ZHANG])
        assert time.monotonic() - t0 < 3
    finally:
        hook.close()


def test_refused_connection_is_a_failure(message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeliveryError, match="ConnectionError"):
        WebhookChannel(Target(id="h", kind="webhook", url=dead_url())).send(message, [ZHANG])


def test_json_error_in_a_200_answer_is_a_failure(message) -> None:  # type: ignore[no-untyped-def]
    class Refusing(Webhook):
        def answer(self, r, h):  # type: ignore[no-untyped-def]
            return 200, {"code": 4001, "message": "签名无效"}

    hook = Refusing()
    try:
        with pytest.raises(DeliveryError, match="code 4001: 签名无效"):
            WebhookChannel(Target(id="h", kind="webhook", url=hook.url)).send(message, [ZHANG])
    finally:
        hook.close()
