"""Modbus TCP polling of electrical-fire monitors (电气火灾监控) → the devices' telemetry and status.

A YAML file names register maps per device model and the gateways to poll (see
`modbus.sample.yaml`):

    poll_s: 5            # one read per device per period
    timeout_s: 2         # a request unanswered this long has failed
    offline_after: 2     # consecutive failed polls before a device is published offline
    models:
      MODEL: [{address: 0, type: uint16, scale: 0.1, unit: V, metric: voltage_v, table: holding}, ...]
    gateways:
      - {host: 10.0.0.5, port: 502, devices: [{device_id: P-000100, unit: 1, model: MODEL}]}

Types: uint16, int16 (one register), uint32, int32, float32 (two registers, high word first);
`table` holding (default) or input. A register's `unit` must be the contract's unit of its
metric (core/contract.py METRICS): a map in A for a metric in mA is refused at load, not
published a thousand times too small. Each device is read in one request covering its model's
registers; the values (raw × scale) are checked by `core.validation.validate()` and published as
`{"ts": now, "m": {...}}` on `sc/{community}/{kind}/{device_id}/telemetry`, QoS 1. A reading
that fails validation is dead-lettered (topic `modbus/<host>:<port>/<unit>`). A device that
fails `offline_after` polls in a row, because its gateway stops answering or it answers with a
Modbus exception, is published `offline` (retained), and `online` again at its first good read.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from bridges.common import bridge_client, load_yaml
from core import heartbeat
from core.contract import METRICS, device_topic
from core.mqtt import connect
from core.registry import RegistryWatcher, ensure_registry
from core.settings import Settings
from core.validation import Rejected, validate
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path

log = logging.getLogger(__name__)

NAME = "bridge-modbus"
SOURCE = "modbus"
WIDTH = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}
STRUCT = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}
TABLES = ("holding", "input")


class ConfigError(ValueError):
    """A register map or gateway list that cannot be used; the message names the place."""


@dataclass(frozen=True)
class Register:
    address: int
    type: str
    scale: float
    unit: str
    metric: str
    table: str = "holding"


@dataclass(frozen=True)
class ModbusDevice:
    device_id: str
    unit: int
    model: str


@dataclass(frozen=True)
class Gateway:
    host: str
    port: int
    devices: tuple[ModbusDevice, ...]


@dataclass(frozen=True)
class ModbusConfig:
    models: dict[str, tuple[Register, ...]]
    gateways: tuple[Gateway, ...]
    poll_s: float = 5.0
    timeout_s: float = 2.0
    offline_after: int = 2


def _metric_kind(metric: str) -> str | None:
    return next((k for k, specs in METRICS.items() if metric in specs), None)


def parse_config(doc: Any, where: str = "modbus config") -> ModbusConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: not a mapping")
    models: dict[str, tuple[Register, ...]] = {}
    for name, regs in (doc.get("models") or {}).items():
        if not isinstance(regs, list) or not regs:
            raise ConfigError(f"{where}: model {name}: a non-empty list of registers expected")
        out = []
        for i, r in enumerate(regs):
            at = f"{where}: model {name}, register {i + 1}"
            try:
                reg = Register(int(r["address"]), str(r["type"]), float(r.get("scale", 1)), str(r["unit"]),
                               str(r["metric"]), str(r.get("table", "holding")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{at}: address, type, unit and metric required ({exc})") from None
            if reg.type not in WIDTH:
                raise ConfigError(f"{at}: type {reg.type!r} is not one of {', '.join(WIDTH)}")
            if reg.table not in TABLES:
                raise ConfigError(f"{at}: table {reg.table!r} is not holding or input")
            if not 0 <= reg.address <= 65535 - WIDTH[reg.type] + 1:
                raise ConfigError(f"{at}: address {reg.address} outside 0..65535")
            kind = _metric_kind(reg.metric)
            if kind is None:
                raise ConfigError(f"{at}: {reg.metric!r} is no metric of the contract")
            want = METRICS[kind][reg.metric].unit
            if reg.unit != want:
                raise ConfigError(f"{at}: {reg.metric} is in {want}, the map says {reg.unit}")
            out.append(reg)
        models[str(name)] = tuple(out)
    gateways = []
    for gi, g in enumerate(doc.get("gateways") or []):
        at = f"{where}: gateway {gi + 1}"
        try:
            devs = tuple(ModbusDevice(str(d["device_id"]), int(d.get("unit", 1)), str(d["model"]))
                         for d in g["devices"])
            gw = Gateway(str(g["host"]), int(g.get("port", 502)), devs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{at}: host and devices (device_id, model) required ({exc})") from None
        for d in gw.devices:
            if d.model not in models:
                raise ConfigError(f"{at}: device {d.device_id}: no model {d.model!r}")
        gateways.append(gw)
    try:
        return ModbusConfig(models, tuple(gateways), float(doc.get("poll_s", 5)), float(doc.get("timeout_s", 2)),
                            int(doc.get("offline_after", 2)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: poll_s, timeout_s, offline_after: {exc}") from None


def load_config(path: Path) -> ModbusConfig:
    return load_yaml(path, parse_config, ConfigError)


def decode(regs: tuple[Register, ...], words: dict[str, dict[int, int]]) -> dict[str, float]:
    """Metric → raw × scale, from the register words read per table (address → 16-bit word)."""
    out = {}
    for r in regs:
        block = words[r.table]
        raw = b"".join(block[r.address + i].to_bytes(2, "big") for i in range(WIDTH[r.type]))
        out[r.metric] = struct.unpack(STRUCT[r.type], raw)[0] * r.scale
    return out


ModbusFactory = Callable[[Gateway, float], Any]


def default_modbus(gw: Gateway, timeout_s: float) -> Any:
    from pymodbus.client import ModbusTcpClient

    return ModbusTcpClient(gw.host, port=gw.port, timeout=timeout_s, retries=0)


def default_client(settings: Settings) -> mqtt.Client:
    return bridge_client(settings, NAME)


@dataclass
class DeviceState:
    failures: int = 0
    state: str | None = None  # last published: None (nothing yet), "online", "offline"
    last_error: str = ""
    polls: int = 0


@dataclass
class ModbusBridge:
    """Polls every gateway in its own thread; `poll_once(gateway)` is one round (used by tests)."""

    settings: Settings
    config: ModbusConfig
    client_factory: Callable[[Settings], mqtt.Client] = default_client
    modbus_factory: ModbusFactory = default_modbus
    states: dict[str, DeviceState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ensure_registry(self.settings)
        self.registry = RegistryWatcher(self.settings.registry_path, self.settings.registry_poll_s)
        self.deadletters = DeadLetterStore(store_path(self.settings.data_path), self.settings.deadletter_max,
                                           self.settings.deadletter_max_bytes)
        self.client = self.client_factory(self.settings)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {"polls": 0, "reads_failed": 0, "published": 0, "deadlettered": 0}
        self._threads: list[threading.Thread] = []
        self._modbus = {gw: self.modbus_factory(gw, self.config.timeout_s) for gw in self.config.gateways}

    def start(self, wait_s: float | None = 10.0) -> None:
        connect(self.client, self.settings, wait_s=wait_s)
        for gw in self.config.gateways:
            t = threading.Thread(target=self._loop, args=(gw,), name=f"{NAME}-{gw.host}:{gw.port}", daemon=True)
            t.start()
            self._threads.append(t)

    def run_forever(self) -> None:
        self.start()
        while not self._stop.wait(1.0):
            heartbeat.write(self.settings.data_path, NAME, self.snapshot())

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.config.timeout_s * 3 + 5)
        for m in self._modbus.values():
            m.close()
        self.client.disconnect()
        self.client.loop_stop()
        self.deadletters.close()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counters": dict(self.counters),
                    "devices": {k: {"state": s.state, "failures": s.failures, "error": s.last_error}
                                for k, s in self.states.items()},
                    "mqtt": "ok" if self.client.is_connected() else "down"}

    def _loop(self, gw: Gateway) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.poll_once(gw)
            except Exception:  # one bad round must not end the gateway's polling
                log.exception("polling %s:%d failed", gw.host, gw.port)
            self._stop.wait(max(0.0, self.config.poll_s - (time.monotonic() - t0)))

    def poll_once(self, gw: Gateway) -> None:
        client = self._modbus[gw]
        registry = self.registry.current()
        now_ms = int(time.time() * 1000)
        for d in gw.devices:
            dev = registry.get(d.device_id)
            with self._lock:
                st = self.states.setdefault(d.device_id, DeviceState())
                self.counters["polls"] += 1
                st.polls += 1
            try:
                values = self._read(client, d)
            except (OSError, ConnectionError, ValueError, RuntimeError) as exc:
                self._failed(d, dev, st, str(exc) or type(exc).__name__, now_ms)
                continue
            except Exception as exc:  # pymodbus's own exceptions (ModbusException and its kin)
                self._failed(d, dev, st, str(exc) or type(exc).__name__, now_ms)
                continue
            if dev is None:
                self._dead(gw, d, {"m": values}, "unknown_device", f"{d.device_id} is not in the registry", now_ms)
                continue
            if st.state != "online":
                self._status(dev, "online", now_ms, st)
            with self._lock:
                st.failures, st.last_error = 0, ""
            topic = device_topic(dev.community, dev.kind, dev.device_id, "telemetry")
            payload = orjson.dumps({"ts": now_ms, "m": values})
            try:
                validate(topic, payload, registry, now_ms)
            except Rejected as r:
                self._dead(gw, d, {"m": values}, str(r.reason), r.detail, now_ms)
                continue
            if not self.client.is_connected():
                # A reading is a snapshot: while the broker is away it is counted, not queued without bound.
                with self._lock:
                    self.counters["not_published"] = self.counters.get("not_published", 0) + 1
                continue
            self.client.publish(topic, payload, qos=1)
            with self._lock:
                self.counters["published"] += 1

    def _read(self, client: Any, d: ModbusDevice) -> dict[str, float]:
        regs = self.config.models[d.model]
        if not client.connected and not client.connect():
            raise ConnectionError("gateway does not answer")
        words: dict[str, dict[int, int]] = {t: {} for t in TABLES}
        for table in TABLES:
            mine = [r for r in regs if r.table == table]
            if not mine:
                continue
            lo = min(r.address for r in mine)
            hi = max(r.address + WIDTH[r.type] for r in mine)
            read = client.read_holding_registers if table == "holding" else client.read_input_registers
            rr = read(lo, count=hi - lo, device_id=d.unit)
            if rr.isError():
                raise RuntimeError(f"Modbus exception from unit {d.unit}: {rr}")
            words[table] = {lo + i: w for i, w in enumerate(rr.registers)}
        return decode(regs, words)

    def _failed(self, d: ModbusDevice, dev: Any, st: DeviceState, error: str, now_ms: int) -> None:
        with self._lock:
            st.failures += 1
            st.last_error = error[:200]
            self.counters["reads_failed"] += 1
            due = st.failures >= self.config.offline_after and st.state != "offline"
        if due and dev is not None:  # (again on every failed poll until it could be told)
            log.warning("%s offline after %d failed polls: %s", d.device_id, st.failures, error)
            self._status(dev, "offline", now_ms, st)

    def _status(self, dev: Any, state: str, now_ms: int, st: DeviceState) -> None:
        if not self.client.is_connected():
            return  # not marked as told: the next poll after the broker is back tells it
        topic = device_topic(dev.community, dev.kind, dev.device_id, "status")
        self.client.publish(topic, orjson.dumps({"ts": now_ms, "state": state}), qos=1, retain=True)
        with self._lock:
            st.state = state

    def _dead(self, gw: Gateway, d: ModbusDevice, doc: dict[str, Any], reason: str, detail: str, now_ms: int) -> None:
        topic = f"{SOURCE}/{gw.host}:{gw.port}/{d.unit}"
        self.deadletters.add_many([DeadLetter(topic, orjson.dumps({"device_id": d.device_id, **doc}), reason,
                                              detail, now_ms)])
        with self._lock:
            self.counters["deadlettered"] += 1
