"""Alert partitions benchmark: one engine against two, in the same run, figures printed, misses included.

    python bench/bench_partitions.py [--lag-seconds 20] [--rounds 2]

publish -> alert on sc/alerts latency (bench_alerts.py (d): 5,000 msg/s of background telemetry through
Mosquitto, InfluxDB and ingest, the 100,000-device registry, probes spread over every community), p50 / p99
and probes without an alert [goal p99 < 200 ms]:
(1) one engine for every community, pinned to core 0 (one host);
(2) two engines (`smartcommunity alerts --communities`), each over half of the communities (split by
    device count), pinned to cores 0 and 1: two hosts emulated by two cores of one machine. The broker,
    ingest, InfluxDB and the publishers are not pinned and share both cores with the engines, so (2)
    is a lower bound of what two hosts give.
Each configuration gets fresh services and data (no engine session queued from the other); they run as
one, two, two, one (`--rounds 1`: one, two) so that a drift of the machine's load weighs on both alike,
and each figure is over both of its runs' probes (~3 minutes in all).
Printed: the ratio two / one of p99 and p50, each engine's peak RSS and CPU, the load average, and the
latency split where ingest hands a probe's record on (its batch on the records topic, heard by the benchmark):
publish -> handed on is the path both configurations share, hand-on -> alert the engines' part.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_alerts import EngineSpec, lag_phase  # noqa: E402
from bench_ingest import ensure_big_registry, pct  # noqa: E402

from core.contract import COMMUNITIES, Device  # noqa: E402
from core.registry import load_registry  # noqa: E402

GOAL_P99 = 0.2


def halves(devices: list[Device]) -> tuple[frozenset[str], frozenset[str]]:
    """The split of the communities into two sets nearest to equal in device count."""
    count = collections.Counter(d.community for d in devices)
    names = sorted(COMMUNITIES)
    total = sum(count.values())
    best = min((frozenset(c) for k in range(1, len(names)) for c in itertools.combinations(names, k)),
               key=lambda a: (abs(total - 2 * sum(count[n] for n in a)), sorted(a)))
    return best, frozenset(names) - best


def load() -> float:
    return os.getloadavg()[0]


def ms(x: float) -> str:
    return f"{x * 1000:,.0f} ms"


def line(lags: list[float], probes: int) -> str:
    return (f"p50 {ms(pct(lags, 0.5))}, p99 {ms(pct(lags, 0.99))}, max {ms(max(lags, default=0))} over "
            f"{probes} probes ({probes - len(lags)} without an alert)")


def split(lags: list[float]) -> str:
    return f"p50 {ms(pct(lags, 0.5))}, p99 {ms(pct(lags, 0.99))}"


def run(tmp: Path, registry: Path, devices: list[Device], seconds: float, label: str,
        engines: tuple[EngineSpec, ...]) -> dict[str, Any]:
    tmp.mkdir()
    l0, t0 = load(), time.monotonic()
    d = lag_phase(tmp, registry, devices, seconds, engines)
    d["load"] = (l0, load())
    ok = pct(d["lags"], 0.99) < GOAL_P99 and not d["missing"]
    print(f"{label}: {line(d['lags'], d['probes'])} at {d['offered']:,.0f} msg/s background "
          f"[goal p99 < {ms(GOAL_P99)}] {'MET' if ok else 'MISSED'}; load average {l0:.1f} -> {d['load'][1]:.1f}; "
          f"ingest CPU {d['ingest_cpu_share'] * 100:.0f} % of a core, backlog up to {d['ingest_backlog']} batches; "
          f"{time.monotonic() - t0:.0f} s")
    print(f"    of which publish -> handed on by ingest {split(d['handed'])}, hand-on -> alert "
          f"{split(d['engine_lags'])}")
    for e in d["engines"]:
        print(f"    {e['name']} (cores {','.join(map(str, e['cores']))}): {line(e['lags'], e['probes'])}, hand-on "
              f"-> alert {split(e['engine_lags'])}; peak RSS "
              f"{e['rss'] / 2**20:.0f} MB, CPU {e['cpu_s']:.1f} s = {e['cpu_share'] * 100:.0f} % of a core, "
              f"inbox up to {e['backlog']} messages")
    if d["offered"] < 0.95 * 5000:
        print("    the publisher could not offer 5,000 msg/s here")
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lag-seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2, choices=(1, 2), help="1: one, two; 2: one, two, two, one")
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("two cores are needed to pin two engines apart")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-partitions-"))
    registry = tmp / "registry.geojson"
    how = ensure_big_registry(registry, tmp / "var", 100_000)
    devices = sorted(load_registry(registry).values(), key=lambda d: d.device_id)
    a, b = halves(devices)
    count = collections.Counter(d.community for d in devices)
    start = load()
    print(f"registry: {len(devices):,} devices ({how}); machine: {os.cpu_count()} CPUs, load average "
          f"{start:.1f} at start")
    print(f"partitions: {','.join(sorted(a))} ({sum(count[n] for n in a):,} devices) | {','.join(sorted(b))} "
          f"({sum(count[n] for n in b):,} devices). Two hosts are emulated by two cores of one machine: each "
          f"engine pinned to its core, the broker, ingest and InfluxDB shared and unpinned, so the two-engine "
          f"figure is a lower bound of the benefit of two hosts.")
    one = (EngineSpec(None, 0),)
    two = (EngineSpec(a, 0), EngineSpec(b, 1))
    order = [("one", one), ("two", two), ("two", two), ("one", one)][: 2 * args.rounds]
    results: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    for i, (kind, engines) in enumerate(order):
        label = "(1) one engine, every community" if kind == "one" else "(2) two engines, half the communities each"
        results[kind].append(run(tmp / f"{i}-{kind}", registry, devices, args.lag_seconds, label, engines))
    lags = {k: [x for r in rs for x in r["lags"]] for k, rs in results.items()}
    p99 = {k: pct(v, 0.99) for k, v in lags.items()}
    p50 = {k: pct(v, 0.5) for k, v in lags.items()}
    missing = {k: sum(r["missing"] for r in rs) for k, rs in results.items()}
    for k, rs in results.items():
        print(f"{k}: {line(lags[k], sum(r['probes'] for r in rs))}; publish -> handed on by ingest "
              f"{split([x for r in rs for x in r['handed']])}, hand-on -> alert "
              f"{split([x for r in rs for x in r['engine_lags']])}")
    print(f"two / one: p99 {p99['two'] / p99['one']:.2f} ({ms(p99['two'])} / {ms(p99['one'])}), p50 "
          f"{p50['two'] / p50['one']:.2f} ({ms(p50['two'])} / {ms(p50['one'])}); without an alert: two "
          f"{missing['two']}, one {missing['one']}")
    print(f"load average {start:.1f} at start, {load():.1f} at end (other work on this machine skews absolute "
          f"figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
