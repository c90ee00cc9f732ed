"""How fast the OneNET bridge answers: pushes of 10 points from 4 concurrent senders, each answered
200 only after the broker's PUBACKs (`pytest -m slow tests/bridges -s` prints the figures)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import pytest
import requests

from core.contract import Device
from core.settings import Settings
from tests.bridges.conftest import ONENET_DEV, Running
from tests.bridges.test_onenet import now_ms, plain_body, point

SENDERS = 4
PUSHES = 100  # per sender
POINTS = 10  # per push


@pytest.mark.slow
def test_push_throughput_and_latency(run_bridge: Any, mapping: Any, gas: Device, settings: Settings,
                                     collector: Any) -> None:
    r: Running = run_bridge(mapping, device_rate=1e6, device_burst=10**6)
    col = collector(f"sc/{gas.community}/gas/{gas.device_id}/telemetry")
    base = now_ms() - 3_600_000
    lat: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()

    def send(k: int) -> None:
        s = requests.Session()
        for i in range(PUSHES):
            at0 = base + (k * PUSHES + i) * POINTS
            body = plain_body([point("CH4", 1.0, at0 + j, ONENET_DEV) for j in range(POINTS)])
            t0 = time.perf_counter()
            code = s.post(r.url, data=body, timeout=30).status_code
            with lock:
                lat.append(time.perf_counter() - t0)
                codes.append(code)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=send, args=(k,)) for k in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = SENDERS * PUSHES
    assert codes == [200] * n
    assert col.wait_for(lambda m: len(m) >= n * POINTS, 30)
    lat.sort()
    print(f"\nOneNET bridge: {n} pushes x {POINTS} points in {wall:.2f} s = {n / wall:.0f} pushes/s, "
          f"{n * POINTS / wall:.0f} points/s; latency p50 {statistics.median(lat) * 1000:.1f} ms, "
          f"p99 {lat[int(0.99 * n) - 1] * 1000:.1f} ms")
