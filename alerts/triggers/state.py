"""A device state: a status message (`status: offline`) or a boolean/number metric saying the same
(`metric: online`, `op: "=="`, `threshold: false`); the opposite state clears it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import OPS, Verdict
from core.contract import STATUS_STATES
from core.validation import Record, Status, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "state"
KEYS = frozenset({"status", "metric", "op", "threshold"})


def validate(rule: Rule) -> str | None:
    if rule.status not in STATUS_STATES:
        return "status must be online or offline"
    if rule.metric is not None and (rule.op not in OPS or rule.threshold is None):
        return "a state rule's metric needs op and threshold"
    return None


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    if isinstance(rec, Status):
        return (Verdict.TRUE if rec.state == rule.status else Verdict.FALSE), rec.state
    if isinstance(rec, Telemetry) and rule.metric is not None and rule.metric in rec.metrics:
        v = rec.metrics[rule.metric]
        return (Verdict.TRUE if OPS[rule.op or "=="](v, rule.threshold) else Verdict.FALSE), v
    return None, None
