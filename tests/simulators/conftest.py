"""Fixtures for the simulator tests: the bundled registry, and a real MQTT subscriber.

The broker itself is tests/conftest.py's session `broker` (a real Mosquitto on a free port).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from core.contract import Device
from core.registry import bundled_registry_path, load_registry
from core.settings import Settings, load_settings

NOW_MS = 1_795_579_800_000  # 2026-11-25T04:10:00Z = 12:10 local: lunch time, cooking bumps on


@pytest.fixture(scope="session")
def registry() -> Mapping[str, Device]:
    return load_registry(bundled_registry_path())


def sim_settings(data_dir: Path, **over: Any) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    return load_settings(env, data_dir=str(data_dir), **over)


class Subscriber:
    """A bare paho subscriber that records (topic, payload, retain)."""

    def __init__(self, host: str, port: int, topic: str = "sc/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ts-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_quiet(self, quiet_s: float = 0.5, timeout_s: float = 10.0) -> None:
        """Until no new message arrived for `quiet_s`."""
        deadline = time.monotonic() + timeout_s
        last = -1
        while time.monotonic() < deadline:
            n = len(self.messages)
            if n == last:
                return
            last = n
            time.sleep(quiet_s)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(broker: Any) -> Iterator[Subscriber]:
    s = Subscriber("127.0.0.1", broker.url.port)
    yield s
    s.close()
