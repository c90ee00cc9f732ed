"""Registry loading, seeding and hot reload."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from core.contract import Device
from core.registry import (
    Registry,
    RegistryError,
    RegistryWatcher,
    bundled_registry_path,
    ensure_registry,
    load_registry,
    write_registry,
)
from core.settings import Settings


def test_ensure_registry_seeds_from_bundled_once(geo_settings: Settings) -> None:
    path = ensure_registry(geo_settings)
    assert path == geo_settings.registry_path
    assert path.read_bytes() == bundled_registry_path().read_bytes()
    path.write_bytes(b'{"type":"FeatureCollection","features":[]}')
    ensure_registry(geo_settings)  # never overwrites an existing registry
    assert len(load_registry(path)) == 0


def test_load_registry_gives_contract_devices() -> None:
    reg = load_registry(bundled_registry_path())
    assert isinstance(reg, Registry)
    dev = reg["G-000001"]
    assert isinstance(dev, Device) and dev.kind == "gas" and dev.interval_s == 10.0
    assert "G-000001" in reg and "nope" not in reg
    assert reg.devices is not None and reg.version.count(":") == 1


def test_load_registry_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "r.geojson"
    bad.write_text("{not json")
    with pytest.raises(RegistryError):
        load_registry(bad)
    bad.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","properties":{}}]}')
    with pytest.raises(RegistryError, match=r"features\[0\]"):
        load_registry(bad)


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    devs = list(load_registry(bundled_registry_path()).values())[:50]
    path = tmp_path / "sub" / "devices.geojson"
    write_registry(path, devs)
    again = load_registry(path)
    assert [d.as_json() for d in again.values()] == [d.as_json() for d in devs]


def _one(device_id: str) -> Device:
    return Device(device_id, "gas", "yanling", "YL-01", 10.0, 110.782, 32.651)


def test_watcher_picks_up_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "devices.geojson"
    write_registry(path, [_one("A-1")])
    w = RegistryWatcher(path, poll_s=0.05)
    assert set(w.current()) == {"A-1"}
    write_registry(path, [_one("A-1"), _one("B-2")])
    deadline = time.monotonic() + 5
    while "B-2" not in w.current() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(w.current()) == {"A-1", "B-2"}


def test_watcher_keeps_last_good_registry_on_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "devices.geojson"
    write_registry(path, [_one("A-1")])
    w = RegistryWatcher(path, poll_s=0)
    path.write_text("garbage")
    assert w.refresh() is False
    assert set(w.current()) == {"A-1"}


def test_watcher_stats_at_most_every_poll(tmp_path: Path) -> None:
    path = tmp_path / "devices.geojson"
    write_registry(path, [_one("A-1")])
    w = RegistryWatcher(path, poll_s=3600)
    write_registry(path, [_one("B-2")])
    assert set(w.current()) == {"A-1"}  # not re-read before poll_s has passed
    assert w.refresh(force=True) and set(w.current()) == {"B-2"}


def test_watcher_is_safe_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "devices.geojson"
    write_registry(path, [_one("A-1")])
    w = RegistryWatcher(path, poll_s=0)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(300):
                reg = w.current()
                assert len(reg) in (1, 2)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        write_registry(path, [_one("A-1")] + ([_one("B-2")] if i % 2 else []))
    for t in threads:
        t.join()
    assert not errors


def test_load_100k(tmp_path: Path) -> None:
    """100,000 devices load whole; how fast is bench/bench_geodata.py's figure, not a timed test."""
    feat = orjson.loads(bundled_registry_path().read_bytes())["features"][0]
    feats = []
    for i in range(100_000):
        f = {**feat, "properties": {**feat["properties"], "device_id": f"G-{i:06d}"}}
        feats.append(f)
    path = tmp_path / "big.geojson"
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": feats}))
    reg = load_registry(path)
    assert len(reg) == 100_000 and reg["G-099999"].device_id == "G-099999"
