"""Modbus TCP polling against pymodbus's own server, publishing to the real broker."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from bridges.modbus import ConfigError, Gateway, ModbusBridge, ModbusDevice, load_config, parse_config
from core.contract import Device
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from ingest.deadletter import DeadLetterStore, store_path
from smartcommunity.services import free_port
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
MODEL = [
    {"address": 0, "type": "uint16", "scale": 0.1, "unit": "V", "metric": "voltage_v"},
    {"address": 1, "type": "uint16", "scale": 0.01, "unit": "A", "metric": "current_a"},
    {"address": 2, "type": "uint16", "scale": 1, "unit": "mA", "metric": "leakage_ma"},
    {"address": 3, "type": "int16", "scale": 0.1, "unit": "°C", "metric": "temp_c"},
    {"address": 4, "type": "float32", "scale": 1, "unit": "kW", "metric": "power_kw"},
]


def words(volt: int, amp: int, leak: int, temp: int, kw: float) -> list[int]:
    return [volt, amp, leak, temp & 0xFFFF, *struct.unpack(">HH", struct.pack(">f", kw))]


class Server:
    """pymodbus's TCP server in a thread of its own, one SimDevice per unit id."""

    def __init__(self, units: dict[int, list[int]], port: int | None = None) -> None:
        self.port = port or free_port()
        self.stopped = False
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        devices = [SimDevice(u, [SimData(0, values=v, datatype=DataType.REGISTERS)]) for u, v in units.items()]

        async def main() -> None:
            self.server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
            started.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        """The gateway stops answering: listener and connections closed."""
        if not self.stopped:
            self.stopped = True
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)


@pytest.fixture
def power(settings: Settings) -> list[Device]:
    reg = load_registry(ensure_registry(settings))
    return sorted((d for d in reg.values() if d.kind == "power"), key=lambda d: d.device_id)[:3]


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(units: dict[int, list[int]], port: int | None = None) -> Server:
        s = Server(units, port)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
        s.loop.call_soon_threadsafe(s.loop.stop)


def config(port: int, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"poll_s": 0.3, "timeout_s": 0.5, "offline_after": 2, "models": {"efm": MODEL},
            "gateways": [{"host": "127.0.0.1", "port": port, "devices": devices}]}


def latest(col: Any, topic: str) -> dict[str, Any] | None:
    got = [orjson.loads(p) for t, p, _ in col.messages if t == topic]
    return got[-1] if got else None


def test_polls_scaled_registers_and_a_silent_gateway_turns_its_devices_offline(
        settings: Settings, power: list[Device], servers: Any, collector: Any) -> None:
    ok, bad, absent = power
    srv = servers({1: words(2205, 150, 30, -10, 12.5), 2: words(2205, 150, 65000, 250, 1.0)})
    cfg = parse_config(config(srv.port, [
        {"device_id": ok.device_id, "unit": 1, "model": "efm"},
        {"device_id": bad.device_id, "unit": 2, "model": "efm"},      # leakage 65000 mA: beyond 0..10000
        {"device_id": absent.device_id, "unit": 9, "model": "efm"},   # no such unit: Modbus exception
    ]))
    col = collector("sc/+/power/#")
    bridge = ModbusBridge(settings, cfg)
    bridge.start()
    try:
        tele = f"sc/{ok.community}/power/{ok.device_id}/telemetry"
        status = f"sc/{ok.community}/power/{ok.device_id}/status"
        gone = f"sc/{absent.community}/power/{absent.device_id}/status"
        assert col.wait_for(lambda m: latest(col, tele) is not None and latest(col, gone) is not None, 15)
        m = latest(col, tele)["m"]  # type: ignore[index]
        assert m == pytest.approx({"voltage_v": 220.5, "current_a": 1.5, "leakage_ma": 30.0, "temp_c": -1.0,
                                   "power_kw": 12.5})
        assert latest(col, status)["state"] == "online"  # type: ignore[index]
        assert latest(col, gone)["state"] == "offline"  # type: ignore[index]
        assert not any(t == f"sc/{bad.community}/power/{bad.device_id}/telemetry" for t, _, _ in col.messages)
        store = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max)
        dead = store.list(reason="bad_value")
        store.close()
        assert dead and dead[0]["topic"] == f"modbus/127.0.0.1:{srv.port}/2"
        assert orjson.loads(dead[0]["payload"])["device_id"] == bad.device_id

        srv.stop()  # the gateway stops answering
        assert col.wait_for(lambda m: (latest(col, status) or {}).get("state") == "offline", 15)
        off = [(t, r) for t, p, r in col.messages if t == status and orjson.loads(p)["state"] == "offline"]
        assert off and off[-1][1] is False  # published live (retained on the broker)
        assert bridge.snapshot()["devices"][ok.device_id]["failures"] >= 2

        servers({1: words(2300, 100, 5, 200, 3.0)}, port=srv.port)  # back, with new readings
        assert col.wait_for(lambda m: (latest(col, status) or {}).get("state") == "online", 15)
        assert col.wait_for(lambda m: (latest(col, tele) or {}).get("m", {}).get("voltage_v") == 230.0, 15)
    finally:
        bridge.close()


def test_the_command_refuses_a_bad_config(tmp_path: Path, settings: Settings) -> None:
    from smartcommunity.cli import build_parser

    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump({"models": {"efm": [{**MODEL[0], "unit": "kV"}]}, "gateways": []}))
    args = build_parser().parse_args(["bridge", "modbus", "--config", str(f)])
    assert args.func(args, settings) == 2


def test_register_maps_are_checked_against_the_contract(tmp_path: Path) -> None:
    def with_reg(**over: Any) -> dict[str, Any]:
        return {"models": {"efm": [{**MODEL[2], **over}]},
                "gateways": [{"host": "h", "devices": [{"device_id": "P-1", "model": "efm"}]}]}

    assert parse_config(with_reg()).gateways == (Gateway("h", 502, (ModbusDevice("P-1", 1, "efm"),)),)
    for bad, words_ in ((with_reg(unit="A"), "in mA"), (with_reg(type="int64"), "type"),
                        (with_reg(metric="lel"), "no metric"), (with_reg(table="coil"), "table"),
                        ({"models": {"efm": MODEL}, "gateways": [{"host": "h", "devices": [
                            {"device_id": "P-1", "model": "other"}]}]}, "no model")):
        with pytest.raises(ConfigError, match=words_):
            parse_config(bad)
    sample = load_config(ROOT / "bridges" / "modbus.sample.yaml")
    assert sample.gateways and sample.models
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump(with_reg(unit="kV")))
    with pytest.raises(ConfigError, match=str(f)):
        load_config(f)



def test_readings_while_the_broker_is_away_are_counted_not_queued(settings: Settings, power: list[Device],
                                                                   servers: Any) -> None:
    srv = servers({1: words(2205, 150, 30, 20, 1.0)})
    away = replace(settings, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")  # nothing listens there
    cfg = parse_config(config(srv.port, [{"device_id": power[0].device_id, "unit": 1, "model": "efm"}]))
    bridge = ModbusBridge(away, cfg)
    bridge.start(wait_s=0.5)
    try:
        assert wait_until(lambda: bridge.snapshot()["counters"].get("not_published", 0) >= 2, 10)
        snap = bridge.snapshot()
        assert snap["counters"]["published"] == 0 and snap["counters"]["reads_failed"] == 0
        assert snap["devices"][power[0].device_id]["state"] is None  # online still to be told
        assert snap["mqtt"] == "down"
    finally:
        bridge.close()
