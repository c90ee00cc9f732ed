"""Benchmarks for geodata (issue #3). Plain script: `python bench/bench_geodata.py [--devices N]`.

Goals: layers + 100,000-device registry loaded < 2 s (cold process, imports included);
100,000 points assigned to compounds < 1 s; a within-200 m query < 5 ms.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cold_load(registry: str) -> dict[str, float]:
    """Run in a fresh interpreter: imports + all layers + the registry, as a starting service sees it."""
    t0 = time.perf_counter()
    from core.registry import load_registry
    from geodata.layers import load_bundled_layers

    t1 = time.perf_counter()
    layers = load_bundled_layers()
    t2 = time.perf_counter()
    reg = load_registry(Path(registry))
    t3 = time.perf_counter()
    assert len(reg) > 0 and len(layers.compounds) > 0
    return {"imports_s": t1 - t0, "layers_s": t2 - t1, "registry_s": t3 - t2, "total_s": t3 - t0,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--cold", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold:
        print(json.dumps(cold_load(args.cold)))
        return 0

    import numpy as np

    from core.geojson_io import write_feature_collection
    from core.registry import REGISTRY_FILE_NAME, load_registry
    from geodata.devplan import synth_features
    from geodata.layers import load_bundled_layers
    from geodata.spatial import SpatialIndex

    layers = load_bundled_layers()
    tmp = Path(tempfile.mkdtemp(prefix="bench_geodata_"))
    reg_path = tmp / REGISTRY_FILE_NAME
    t = time.perf_counter()
    write_feature_collection(reg_path, synth_features(layers, args.devices, seed=7), name="devices")
    print(f"synth {args.devices:,} devices: {time.perf_counter() - t:.2f} s ({reg_path.stat().st_size / 1e6:.1f} MB)")

    runs = [json.loads(subprocess.check_output([sys.executable, __file__, "--cold", str(reg_path)]))
            for _ in range(3)]  # fmt: skip
    best = min(runs, key=lambda r: r["total_s"])
    print(f"cold load (best of 3): imports {best['imports_s']:.2f} s + layers {best['layers_s']:.2f} s + "
          f"registry {best['registry_s']:.2f} s = {best['total_s']:.2f} s  [goal < 2 s]; "
          f"child maxrss {best['maxrss_mb']:.0f} MB")  # fmt: skip

    times = []
    for _ in range(5):
        t = time.perf_counter()
        reg = load_registry(reg_path)
        times.append(time.perf_counter() - t)
    print(f"load_registry {len(reg):,} devices (warm): median {statistics.median(times) * 1000:.0f} ms")

    t = time.perf_counter()
    idx = SpatialIndex(layers)
    print(f"SpatialIndex build: {(time.perf_counter() - t) * 1000:.0f} ms")
    lons = np.fromiter((d.lon for d in reg.values()), float)
    lats = np.fromiter((d.lat for d in reg.values()), float)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        got = idx.assign(lons, lats, "compounds")
        times.append(time.perf_counter() - t)
    inside = sum(g is not None for g in got)
    print(f"assign {len(lons):,} points to compounds: median {statistics.median(times) * 1000:.0f} ms "
          f"({inside:,} inside a compound polygon)  [goal < 1 s]")  # fmt: skip

    rng = np.random.default_rng(3)
    qs = list(zip(rng.uniform(110.781, 110.799, 1000), rng.uniform(32.641, 32.659, 1000), strict=True))
    times = []
    for lon, lat in qs:
        t = time.perf_counter()
        idx.nearby(lon, lat, 200.0)
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"nearby(200 m) x {len(qs)}: median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms  [goal < 5 ms]")  # fmt: skip
    times = []
    for lon, lat in qs:  # what an alert asks when it is raised: where it is, then the nearest of each need
        t = time.perf_counter()
        loc = idx.locate(lon, lat)
        idx.nearest_resources(lon, lat, (loc.building_id, loc.compound_id))
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"locate + nearest_resources x {len(qs)}: median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms  [goal < 5 ms]")  # fmt: skip

    from geodata.importer import validate_rows

    t = time.perf_counter()
    validate_rows(reg_path, reg_path.read_bytes(), layers)
    print(f"validate {args.devices:,}-device import file: {time.perf_counter() - t:.2f} s")

    tracemalloc.start()
    reg2 = load_registry(reg_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"tracemalloc peak while loading {len(reg2):,} devices: {peak / 1e6:.0f} MB")
    print(f"this process ru_maxrss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
