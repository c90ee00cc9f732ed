"""The contract's MQTT alert topic as a channel, against the real broker."""

from __future__ import annotations

import orjson
import pytest

from alerts.channels.base import DeliveryError, Target
from alerts.channels.mqtt import MqttChannel
from tests.alerts.channels.conftest import sample_alert
from tests.alerts.channels.receivers import dead_url


def test_publishes_the_alert_on_the_contract_topic(settings, collector, message) -> None:  # type: ignore[no-untyped-def]
    col = collector("sc/alerts/#")
    alert = sample_alert()
    ch = MqttChannel(Target(id="q", kind="mqtt", url=settings.mqtt_url))
    try:
        ch.send(message, [], alert=alert.as_json())
    finally:
        ch.close()
    topic = "sc/alerts/yanling/a-0123456789abcdef"
    try:
        assert col.wait_for(lambda m: any(t == topic and p for t, p, _ in m))
        # Only this alert's copy: retained alerts of earlier tests on the session's broker arrive too.
        got = [orjson.loads(p) for t, p, _ in col.messages if t == topic and p]
        assert got[0]["alert_id"] == alert.alert_id and got[0]["severity"] == "red"
    finally:  # the copy is retained: later tests reading the whole alert bus must not see it
        col.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def test_no_broker_is_a_failure(message) -> None:  # type: ignore[no-untyped-def]
    url = dead_url().replace("http://", "mqtt://").replace("/hook", "")
    ch = MqttChannel(Target(id="q", kind="mqtt", url=url), timeout_s=1)
    with pytest.raises(DeliveryError):
        ch.send(message, [], alert=sample_alert().as_json())
