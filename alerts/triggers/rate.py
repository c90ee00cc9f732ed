"""Rate of change of one metric, per minute of device time between consecutive readings:
`metric`, `op`, `threshold` (units per minute), e.g. pressure falling faster than 0.1 MPa/min
(`op: "<="`, `threshold: -0.1`). Readings closer than `min_dt_s` apart are not differentiated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import OPS, Verdict
from core.validation import Record, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "rate"
KEYS = frozenset({"metric", "op", "threshold", "min_dt_s"})


def validate(rule: Rule) -> str | None:
    if rule.metric is None or rule.op not in OPS or not isinstance(rule.threshold, int | float):
        return "a rate rule needs metric, op and a numeric threshold (units per minute)"
    return None


def wants_memory(rule: Rule, rec: Record) -> bool:
    return isinstance(rec, Telemetry) and rule.metric in rec.metrics


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    if not isinstance(rec, Telemetry) or rule.metric not in rec.metrics or mem is None:
        return None, None
    v = rec.metrics[rule.metric]
    prev = mem.get("prev")
    if prev is not None and rec.ts_ms <= prev[0]:
        return None, None  # late or duplicate reading
    mem["prev"] = (rec.ts_ms, float(v))
    if prev is None or rec.ts_ms - prev[0] < (rule.min_dt_s or 1.0) * 1000:
        return None, None
    per_min = (float(v) - prev[1]) / ((rec.ts_ms - prev[0]) / 60_000)
    return (Verdict.TRUE if OPS[rule.op or "<="](per_min, rule.threshold) else Verdict.FALSE), round(per_min, 4)
