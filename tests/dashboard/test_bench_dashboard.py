"""bench/bench_dashboard.py's stack figures come out of one real run: a started stack, real Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_dashboard.py"
VENDOR = ROOT / "build" / "vendor" / "maplibre-gl-6.9.0" / "maplibre-gl.mjs"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.mark.skipif(not VENDOR.is_file(), reason="the bare page's MapLibre is fetched by scripts/bootstrap.sh (npm)")
def test_bench_prints_wall_map_and_first_draw_against_their_goals() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--stack-only", "--rounds", "2"], cwd=ROOT, text=True,
                         capture_output=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    out = run.stdout
    for name, goal in (("ack → wall", "goal ≤ 2.0 s"), ("alert → map (from publication)", "goal ≤ 2.0 s"),
                       ("alert → map (from started_at)", "goal ≤ 2.0 s"), ("first draw ratio", "goal ≤ 1.5×")):
        line = next((x for x in out.splitlines() if x.startswith(name)), None)
        assert line is not None and goal in line and re.search(r"goal ≤ [\d.]+ ?(s|×)\s+(OK|MISS)\b", line), (name, out)
    times = [float(x) for x in re.findall(r"median\s+([\d.]+) s", out)]
    assert len(times) == 5 and all(t > 0 for t in times), out
    assert re.search(r"load average at start [\d.]+ [\d.]+ [\d.]+", out)
    assert re.search(r"load average after the stack figures [\d.]+", out)
