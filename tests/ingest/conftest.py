"""Helpers for the ingest drills: a paced QoS 1 publisher, the ingestor as a real subprocess, counting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core import heartbeat
from core.contract import Device
from core.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from core.registry import ensure_registry, load_registry
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def gas_devices(settings: Settings, n: int = 200) -> list[Device]:
    reg = load_registry(ensure_registry(settings))
    return sorted((d for d in reg.values() if d.kind == "gas"), key=lambda d: d.device_id)[:n]


def gas_messages(devices: list[Device], n: int, base_ms: int) -> list[tuple[str, bytes]]:
    """n valid telemetry messages, each with its own (device, ts), so stored == distinct sent."""
    out = []
    for i in range(n):
        d = devices[i % len(devices)]
        body = {"ts": base_ms + i, "seq": i, "m": {"lel_pct": float(i % 50), "valve_open": False}}
        out.append((f"sc/{d.community}/gas/{d.device_id}/telemetry", orjson.dumps(body)))
    return out


class Publisher:
    """QoS 1 publisher in a thread, paced at `rate` msg/s, with its own persistent session
    (so messages it has not had acknowledged are re-sent after a broker restart)."""

    def __init__(self, settings: Settings, msgs: list[tuple[str, bytes]], rate: float) -> None:
        self.msgs, self.rate = msgs, rate
        self.acked = 0
        self.sent = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tp-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(settings.mqtt.host, settings.mqtt.port, clean_start=False, properties=props)
        self.client.loop_start()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, *a: Any) -> None:
        with self._lock:
            self.acked += 1

    def start(self) -> Publisher:
        self.thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(self.msgs):
            ahead = t0 + i / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            self.client.publish(topic, payload, qos=1)
            self.sent = i + 1
        self.done.set()

    def wait_acked(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.done.is_set() and self.acked >= len(self.msgs):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class IngestProcess:
    """`python -m smartcommunity ingest` with the test's SC_* environment."""

    def __init__(self, settings: Settings, workers: int = 1, **extra_env: str) -> None:
        self.settings = settings
        self.workers = workers
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        self.env |= settings.env() | {"SC_INGEST_HEARTBEAT_S": "0.2"} | extra_env
        self.log_path = settings.data_path / "ingest-test.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        self.settings.data_path.mkdir(parents=True, exist_ok=True)
        for p in (self.settings.data_path / "run").glob("ingest*.json"):
            p.unlink()
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smartcommunity", "ingest", "--workers", str(self.workers)],
                cwd=ROOT, env=self.env, stdout=logf, stderr=subprocess.STDOUT)
        return self

    def heartbeats(self) -> list[dict[str, Any]]:
        return [h for h in heartbeat.read_all(self.settings.data_path, "ingest") if h.get("fresh")]

    def connected(self) -> bool:
        hb = self.heartbeats()
        return len(hb) >= self.workers and all(h.get("mqtt") == "ok" for h in hb)

    def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.connected():
            assert self.proc is not None and self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"ingest did not connect:\n{self.log()}"
            time.sleep(0.1)
        time.sleep(0.3)  # subscription settles

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def count_gas(influx: InfluxClient) -> int:
    try:
        series = influx.query("SELECT count(lel_pct) FROM gas")
    except InfluxUnavailable:
        return -1
    except InfluxRejected as exc:  # a fresh InfluxDB before ingest has created the database: nothing yet
        if "database not found" not in str(exc):
            raise
        return 0
    return int(series[0].values[0][1]) if series and series[0].values else 0


def wait_count(influx: InfluxClient, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = count_gas(influx)
    while n < want and time.monotonic() < deadline:
        time.sleep(0.25)
        n = count_gas(influx)
    return n


@pytest.fixture
def ingest_proc(settings: Settings) -> Iterator[list[IngestProcess]]:
    """Collects IngestProcess objects made by a test and stops them afterwards."""
    made: list[IngestProcess] = []
    yield made
    for p in made:
        p.stop()
