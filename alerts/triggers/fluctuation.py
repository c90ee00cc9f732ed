"""Level and fluctuation of one metric over a sliding window of device time: tells a gas leak into a
sewer manhole from the sewer's own biogas, which a single threshold cannot.

Over the last `window_s` of readings it takes the mean (the level) and the fluctuation: the root mean
square of the differences between successive readings, over the mean. Successive differences, not
the spread around the mean, so that a steady build-up or a well airing out (a ramp) reads as steady
and only reading-to-reading swings count. The condition holds when the mean is at least `threshold`
and the fluctuation at least `params.fluctuation`: a leak's gas arrives in gusts as the pipe pressure
and the air in the well move, so it reads high and unsteady, while biogas from the sewage builds up
slowly and reads low and steady. It clears when the mean falls below `clear_threshold`; in between
(high but steady again) nothing changes, so an open leak alert does not close while the well still
holds gas.

Keys: `metric`, `threshold`, `clear_threshold`, `window_s`, and `params`: `fluctuation` (required),
`min_samples` (readings the window needs before it says anything; default 6), `install` (only
devices whose registry `install` is this, e.g. 窨井).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

from alerts.triggers import Verdict
from core.validation import Record, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "fluctuation"
KEYS = frozenset({"metric", "threshold", "clear_threshold", "window_s", "params"})
PARAMS = frozenset({"fluctuation", "min_samples", "install"})
MIN_SAMPLES = 6


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def validate(rule: Rule) -> str | None:
    p = rule.params or {}
    if rule.metric is None or not _num(rule.threshold) or not _num(rule.clear_threshold):
        return "a fluctuation rule needs metric, threshold (the window's mean) and clear_threshold"
    if not rule.clear_threshold < rule.threshold:  # type: ignore[operator]
        return "clear_threshold must lie below threshold"
    if not rule.window_s or rule.window_s <= 0:
        return "a fluctuation rule needs window_s > 0"
    if not isinstance(p, dict) or set(p) - PARAMS or not _num(p.get("fluctuation")) or p["fluctuation"] <= 0:
        return f"params of a fluctuation rule are {sorted(PARAMS)}; fluctuation > 0 is required"
    n = p.get("min_samples", MIN_SAMPLES)
    if not isinstance(n, int) or isinstance(n, bool) or n < 3:
        return "params.min_samples must be a whole number >= 3"
    if "install" in p and not isinstance(p["install"], str):
        return "params.install is the registry's install text"
    return None


def _mine(rule: Rule, rec: Record) -> bool:
    if not isinstance(rec, Telemetry) or rule.metric not in rec.metrics:
        return False
    install = (rule.params or {}).get("install")
    return install is None or rec.device.extra.get("install") == install


def wants_memory(rule: Rule, rec: Record) -> bool:
    return _mine(rule, rec)


def level_and_fluctuation(values: list[float]) -> tuple[float, float]:
    """Mean, and root mean square of successive differences over the mean (0 when the mean is 0)."""
    mean = sum(values) / len(values)
    if mean <= 0 or len(values) < 2:
        return mean, 0.0
    msd = sum((b - a) ** 2 for a, b in itertools.pairwise(values)) / (len(values) - 1)
    return mean, math.sqrt(msd) / mean


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    if mem is None or not _mine(rule, rec):
        return None, None
    assert isinstance(rec, Telemetry)
    window: list[list[float]] = mem.setdefault("window", [])  # [ts_ms, value], oldest first (kept as JSON)
    if window and rec.ts_ms <= window[-1][0]:
        return None, None  # late or duplicate reading: the window is in device time
    window.append([rec.ts_ms, float(rec.metrics[rule.metric])])  # type: ignore[index]
    horizon = rec.ts_ms - (rule.window_s or 0) * 1000
    while window and window[0][0] < horizon:
        window.pop(0)
    if len(window) < (rule.params or {}).get("min_samples", MIN_SAMPLES):
        return None, None
    mean, swing = level_and_fluctuation([v for _, v in window])
    value = round(mean, 2)
    if mean >= rule.threshold and swing >= (rule.params or {})["fluctuation"]:  # type: ignore[operator]
        return Verdict.TRUE, value
    if mean < rule.clear_threshold:  # type: ignore[operator]
        return Verdict.FALSE, value
    return Verdict.KEEP, value
