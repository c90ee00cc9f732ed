"""A secure stack for the hostile-client tests: the project's own Mosquitto and InfluxDB started
with SC_SECURE=1 (local CA, TLS, password file + ACL, InfluxDB auth), and the bundled registry
provisioned with `devices provision`. Started once per session; tests use their own devices.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from core.mqtt import tls_context
from core.registry import Device, ensure_registry, load_registry
from core.secrets import read_secret
from core.settings import Settings
from security.broker import provision
from smartcommunity.services import RunningService, free_port, start_influxdb, start_mosquitto
from tests.conftest import make_settings


@dataclass
class SecureStack:
    settings: Settings
    broker: RunningService
    influxd: RunningService
    registry: dict[str, Device]
    creds_dir: Path

    def creds(self, device_id: str) -> dict[str, Any]:
        return dict(json.loads((self.creds_dir / f"{device_id}.json").read_text()))

    def service_password(self, account: str) -> str:
        return read_secret(self.settings, "mqtt", account)

    def devices(self, kind: str, community: str | None = None) -> list[Device]:
        return [d for _, d in sorted(self.registry.items())
                if d.kind == kind and (community is None or d.community == community)]

    def as_account(self, account: str) -> Settings:
        return replace(self.settings, mqtt_account=account)


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    root = tmp_path_factory.mktemp("secure")
    s = make_settings(root / "var", secure=True, mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                      mqtt_tls_port=free_port(), influx_url=f"http://127.0.0.1:{free_port()}",
                      alert_holdoff_s=2.0, registry_poll_s=0.2, ingest_flush_ms=50)
    broker = start_mosquitto(s)
    influxd = start_influxdb(s)
    registry = dict(load_registry(ensure_registry(s)).items())
    res = provision(s, registry)
    assert res.reloaded and res.issued
    try:
        yield SecureStack(s, broker, influxd, registry, res.out_dir)
    finally:
        broker.stop()
        influxd.stop()


class Probe:
    """One raw paho client that records what the broker did to it."""

    def __init__(self, stack: SecureStack, username: str | None = None, password: str | None = None,
                 client_id: str | None = None, tls: bool = True, protocol: Any = mqtt.MQTTv311,
                 subscribe: list[str] | None = None, verify: bool = True) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.suback = threading.Event()
        self._subs = subscribe or []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
                             protocol=protocol)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, rc, p=None: self.events.append(("disconnect", str(rc)))
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        s = stack.settings
        port = s.mqtt_tls_port if tls else s.mqtt.port
        if tls:
            self.c.tls_set_context(tls_context(s) if verify else __import__("ssl").create_default_context())
        self.c.reconnect_delay_set(1, 2)
        self.c.connect_async("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, rc, props=None):  # type: ignore[no-untyped-def]
        self.events.append(("connack", str(rc), rc.is_failure))
        self.answered.set()
        if not rc.is_failure:
            self.connected.set()
            for t in self._subs:
                c.subscribe(t, qos=1)

    def _on_subscribe(self, c, u, mid, rcs, props=None):  # type: ignore[no-untyped-def]
        self.events.append(("suback", [str(r) for r in rcs], [r.is_failure for r in rcs]))
        self.suback.set()

    def _on_message(self, c, u, msg):  # type: ignore[no-untyped-def]
        self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_connected(self, timeout: float = 10) -> bool:
        return self.connected.wait(timeout)

    def refused(self) -> bool:
        return any(e[0] == "connack" and e[2] for e in self.events)

    def disconnects(self) -> int:
        return sum(1 for e in self.events if e[0] == "disconnect")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.c.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    made: list[Probe] = []
    yield made
    for p in made:
        p.close()


def device_probe(stack: SecureStack, probes: list[Probe], dev: Device, **kw: Any) -> Probe:
    cred = stack.creds(dev.device_id)
    p = Probe(stack, cred["username"], cred["password"], client_id=cred["client_id"], **kw)
    probes.append(p)
    assert p.wait_connected(), f"device {dev.device_id} could not connect: {p.events}"
    return p


def service_probe(stack: SecureStack, probes: list[Probe], account: str, **kw: Any) -> Probe:
    p = Probe(stack, account, stack.service_password(account), client_id=account, **kw)
    probes.append(p)
    assert p.wait_connected(), f"{account} could not connect: {p.events}"
    if kw.get("subscribe"):
        assert p.suback.wait(10)
    return p


def telemetry(metric: str, value: float, ts_ms: int | None = None) -> bytes:
    return json.dumps({"ts": ts_ms or int(time.time() * 1000), "m": {metric: value}}).encode()


def wait_until(pred: Any, timeout: float = 10, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(every)
