"""Threshold on one metric, with an optional separate clear level (hysteresis / deadband).

Raises when `metric op threshold`; clears when `metric clear_op clear_threshold` (default: when the
raise comparison no longer holds). Between the two nothing changes, so a value wobbling around
the threshold neither flaps nor resets the hold-off. `levels` let the same alert rise in severity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import OPS, Verdict
from core.validation import Record, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "threshold"
KEYS = frozenset({"metric", "op", "threshold", "clear_op", "clear_threshold"})


def validate(rule: Rule) -> str | None:
    if rule.metric is None or rule.op not in OPS or rule.threshold is None:
        return f"a threshold rule needs metric, op (one of {list(OPS)}) and threshold"
    if (rule.clear_op is None) != (rule.clear_threshold is None):
        return "clear_op and clear_threshold go together"
    if rule.clear_op is not None and rule.clear_op not in OPS:
        return f"clear_op must be one of {list(OPS)}"
    if rule.clear_op is not None and OPS[rule.op](rule.clear_threshold, rule.threshold):
        return "the clear level must lie on the clear side of the threshold"
    return None


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    if not isinstance(rec, Telemetry) or rule.metric not in rec.metrics:
        return None, None
    v = rec.metrics[rule.metric]
    if OPS[rule.op or ">="](v, rule.threshold):
        return Verdict.TRUE, v
    if rule.clear_op is None or OPS[rule.clear_op](v, rule.clear_threshold):
        return Verdict.FALSE, v
    return Verdict.KEEP, v
