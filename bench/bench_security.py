"""What the security additions cost on ingest's hot path and at provisioning (issue 12).

    python bench/bench_security.py

Prints, each as a ratio of a ceiling measured in the same run:
- the per-device budget (ingest/ratelimit.py): µs per message for 2,000 devices, against
  validate() + to_line() of the same messages (what ingest already does per message);
- hashing a device password (Mosquitto `$7$` PBKDF2-SHA512, 1,000 rounds): ms per device, and the
  time to provision 3,000 devices;
plus the load average, since the machine is shared.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from core.contract import Device
from core.lineprotocol import to_line
from core.validation import validate
from ingest.ratelimit import DeviceBudget
from security.broker import hash_password


def main() -> None:
    now = int(time.time() * 1000)
    devs = [Device(f"G-{i:06d}", "gas", "yanhu", f"YH-{i % 40:02d}", 10, 110.8, 32.6) for i in range(2000)]
    reg = {d.device_id: d for d in devs}
    msgs = [(f"sc/yanhu/gas/{devs[i % 2000].device_id}/telemetry",
             orjson.dumps({"ts": now + i, "m": {"lel_pct": 1.5, "valve_open": True}})) for i in range(200_000)]
    t0 = time.perf_counter()
    for topic, payload in msgs:
        to_line(validate(topic, payload, reg, now))
    base = (time.perf_counter() - t0) / len(msgs)
    budget = DeviceBudget(20.0, 200)
    ids = [devs[i % 2000].device_id for i in range(len(msgs))]
    t0 = time.perf_counter()
    mono = time.monotonic
    for i, dev in enumerate(ids):
        budget.allow(dev, mono(), now + i)
    cost = (time.perf_counter() - t0) / len(ids)
    print(f"per-device budget: {cost * 1e6:.2f} µs/msg = {cost / base:.1%} of validate+to_line "
          f"({base * 1e6:.2f} µs/msg)")
    t0 = time.perf_counter()
    for _ in range(300):
        hash_password("x" * 43)
    h = (time.perf_counter() - t0) / 300
    print(f"device password hash: {h * 1000:.2f} ms; provisioning 3,000 devices hashes in {h * 3000:.1f} s")
    la = os.getloadavg()
    print(f"load average: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")


if __name__ == "__main__":
    main()
