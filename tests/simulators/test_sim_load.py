"""Garbage and load modes against a real Mosquitto."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from core.contract import Device
from core.validation import Rejected, validate
from simulators.garbage import GENERATORS
from simulators.sim import SimOptions, simulate
from tests.simulators.conftest import Subscriber, sim_settings


def test_simulate_with_garbage_mixes_rejects(
    broker: Any, tmp_path: Path, subscriber: Subscriber, registry: Mapping[str, Device]
) -> None:
    s = sim_settings(tmp_path, mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}")
    res = simulate(s, SimOptions(duration_s=2, garbage=0.5, kinds=["gas"], tick_s=0.1), registry=registry)
    assert res.stats.by_type.get("garbage", 0) > 0
    subscriber.wait_quiet()
    now = int(time.time() * 1000)
    reasons = set()
    for topic, payload, _ in subscriber.messages:
        try:
            validate(topic, payload, registry, now)
        except Rejected as exc:
            reasons.add(exc.reason)
    assert len(reasons) >= 5  # several kinds of violation actually crossed the broker


def test_load_mode_is_paced_and_acknowledged(broker: Any, tmp_path: Path, registry: Mapping[str, Device]) -> None:
    """The pacing holds the rate down and every QoS 1 message is acknowledged; how fast the
    publisher can go flat out is the slow test below and bench/bench_publisher.py, not a timed test."""
    from simulators.load import measure

    s = sim_settings(tmp_path, mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}")
    res = measure(s, 500, processes=2, duration_s=2, qos=1, registry=registry)
    assert res["acked"] == res["sent"] > 0
    assert res["rate"] <= 500 * 1.1, res["summary"]  # not flat out: the pacing works


@pytest.mark.slow
def test_load_mode_flat_out(broker: Any, tmp_path: Path, registry: Mapping[str, Device]) -> None:
    from simulators.load import measure

    s = sim_settings(tmp_path, mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}")
    res = measure(s, float("inf"), processes=2, duration_s=10, qos=0, registry=registry)
    print(res["summary"])
    assert res["rate"] > 5000


def test_generators_cover_injection_topics() -> None:
    assert len(GENERATORS) >= 40
