"""Standby brokers (SC_MQTT_STANDBY_URLS, core/mqtt.py): a client whose broker does not answer goes
on to the next, against real Mosquitto processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.mqtt import connect, make_client
from core.settings import Settings
from smartcommunity.services import RunningService, free_port, start_mosquitto
from tests.conftest import Collector, make_settings, wait_until

TOPIC = "sc/yanhu/water/W-STANDBY/telemetry"


def _send(client, seq: int) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"ts": int(time.time() * 1000), "seq": seq, "m": {"leak": False}})
    client.publish(TOPIC, body, qos=1).wait_for_publish(15)


def test_first_broker_down_the_standby_is_used(settings: Settings, collector: Callable[[str], Collector]) -> None:
    heard = collector(TOPIC)
    s = replace(settings, mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # nothing listens there
                mqtt_standby_urls=f" mqtt://127.0.0.1:{settings.mqtt.port} ")
    client = make_client(s)
    try:
        connect(client, s, wait_s=15)
        assert client.is_connected(), "never reached the standby"
        _send(client, 1)
        assert heard.wait_for(lambda m: len(m) == 1)
    finally:
        client.loop_stop()
        client.disconnect()


def test_lost_broker_client_moves_to_the_standby(tmp_path: Path, settings: Settings,
                                                 collector: Callable[[str], Collector]) -> None:
    primary_settings = make_settings(tmp_path / "primary", mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    primary: RunningService = start_mosquitto(primary_settings)
    heard = collector(TOPIC)  # on the standby (the session's broker)
    s = replace(settings, mqtt_url=primary_settings.mqtt_url, mqtt_standby_urls=settings.mqtt_url)
    client = make_client(s)
    try:
        connect(client, s)
        assert client.is_connected() and client.port == primary_settings.mqtt.port
        _send(client, 1)
        assert heard.messages == []  # it went to the primary
        primary.stop()
        assert wait_until(lambda: client.is_connected() and client.port == settings.mqtt.port, 20)
        _send(client, 2)
        assert heard.wait_for(lambda m: len(m) == 1)
    finally:
        client.loop_stop()
        client.disconnect()
        primary.stop()


def test_standby_must_match_the_scheme() -> None:
    s = make_settings(Path("/tmp/unused"), mqtt_url="mqtts://a:8883", mqtt_standby_urls="mqtt://b:1883")
    with pytest.raises(ValueError, match="TLS"):
        _ = s.mqtt_endpoints
    secure = replace(s, mqtt_url="mqtt://a", secure=True, mqtt_tls_port=8884)
    assert [(u.scheme, u.host, u.port) for u in secure.mqtt_endpoints] == [("mqtts", "a", 8884), ("mqtts", "b", 8884)]
