"""End to end through a real Mosquitto: `smartcommunity simulate --duration 3`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from core.contract import KINDS, Device
from core.validation import validate
from smartcommunity.cli import main
from tests.simulators.conftest import Subscriber


def _env(monkeypatch: pytest.MonkeyPatch, broker: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("SC_MQTT_URL", f"mqtt://127.0.0.1:{broker.url.port}")
    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("SC_CONFIG", raising=False)
    monkeypatch.delenv("SC_REGISTRY_FILE", raising=False)


def test_simulate_cli_delivers_every_kind(
    monkeypatch: pytest.MonkeyPatch, broker: Any, tmp_path: Path, subscriber: Subscriber,
    registry: Mapping[str, Device],
) -> None:
    _env(monkeypatch, broker, tmp_path)
    rc = main(["simulate", "--duration", "3", "--seed", "1", "--inject", "gas_leak:G-000123",
               "--scenario", "camera_sabotage@C-000200"])
    assert rc == 0
    subscriber.wait_quiet()
    now = int(time.time() * 1000)
    kinds: dict[str, set[str]] = {}
    for topic, payload, _ in subscriber.messages:
        if topic.startswith("sc/alerts/"):  # retained alerts other tests left on the shared broker
            continue
        rec = validate(topic, payload, registry, now)  # raises on any contract violation
        kinds.setdefault(type(rec).__name__, set()).add(rec.device.kind)
    assert kinds["Telemetry"] == set(KINDS)
    assert kinds["Status"] == set(KINDS) and kinds["Event"] == {"camera"}
    online = {t for t, p, _ in subscriber.messages if t.endswith("/status") and b"online" in p}
    assert len(online) == len(registry)  # every device announced itself
    truth = list((tmp_path / "var" / "groundtruth").glob("run-*.jsonl"))
    assert len(truth) == 1 and "gas_leak#1" in truth[0].read_text()


def test_per_device_connections_have_real_wills(
    broker: Any, tmp_path: Path, subscriber: Subscriber, registry: Mapping[str, Device],
) -> None:
    import socket

    from simulators.fleet import Fleet
    from simulators.publisher import Sink
    from tests.simulators.conftest import sim_settings

    devs = [registry["C-000010"], registry["G-000010"]]
    settings = sim_settings(tmp_path, mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}")
    fleet = Fleet(devs, 0, int(time.time() * 1000))
    sink = Sink(settings, fleet, per_device=True)
    try:
        for m in fleet.initial():
            assert sink.publish(m)
        subscriber.wait_quiet()
        sock = sink.route["C-000010"].socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the connection dies without DISCONNECT: the broker sends the will
        dev = registry["C-000010"]
        will = (f"sc/{dev.community}/camera/C-000010/status", b'{"state":"offline"}', False)
        deadline = time.monotonic() + 10
        while will not in subscriber.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert will in subscriber.messages
    finally:
        sink.close(drain_s=1)
