"""bench/bench_costs.py's sizing arithmetic (the README's street / district / city table comes from it)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from bench_costs import HEADROOM, HOST_CORES, STREET_DEVICES, STREET_RATE, Part, plan  # noqa: E402


def test_an_instance_is_planned_at_headroom_of_a_core_and_of_its_ceiling() -> None:
    cpu_bound = Part(fixed=0.1, marginal=0.05)
    assert math.isclose(cpu_bound.capacity(), (HEADROOM - 0.1) / 0.05 * 1000)
    capped = Part(fixed=0.0, marginal=0.01, ceiling=20_000)  # the CPU alone would allow 50,000 msg/s
    assert capped.capacity() == HEADROOM * 20_000
    assert math.isclose(capped.cores(30_000, instances=3), 0.3)


def test_plan_counts_instances_and_hosts_from_the_per_part_figures() -> None:
    parts = {"broker": Part(0.0, 0.03, ceiling=70_000), "ingest": Part(0.01, 0.07, ceiling=20_000),
             "alerts": Part(0.0, 0.025), "influxd": Part(0.0, 0.015)}
    street = plan(STREET_DEVICES, parts, db_ceiling=50_000)
    assert math.isclose(street["rate"], STREET_RATE)
    assert street["n"] == {"broker": 1, "ingest": 1, "alerts": 1} and street["hosts"] == 1
    city = plan(1_000_000, parts, db_ceiling=50_000)
    for k, n in city["n"].items():
        assert n == math.ceil(city["rate"] / parts[k].capacity()) > 1, k
    assert math.isclose(city["cores"]["ingest"], city["n"]["ingest"] * 0.01 + city["rate"] / 1000 * 0.07)
    assert city["hosts"] == math.ceil(city["total"] / (HOST_CORES * HEADROOM)) > 1
    assert math.isclose(city["db_load"], city["rate"] / 50_000)
