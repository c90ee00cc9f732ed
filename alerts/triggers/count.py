"""Count in a window: `count` excursions (metric op threshold, counted on the rising edge) within
`window_s` of device time, e.g. 3 residual-current spikes in 10 minutes. Clears when the window
holds fewer than `count` excursions again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import OPS, Verdict
from core.validation import Record, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "count"
KEYS = frozenset({"metric", "op", "threshold", "count", "window_s"})


def validate(rule: Rule) -> str | None:
    if rule.metric is None or rule.op not in OPS or rule.threshold is None:
        return "a count rule needs metric, op and threshold (what one excursion is)"
    if not rule.count or rule.count < 2 or not rule.window_s or rule.window_s <= 0:
        return "a count rule needs count ≥ 2 and window_s > 0"
    return None


def wants_memory(rule: Rule, rec: Record) -> bool:
    """Memory is kept from the first excursion on, not for every device of the kind."""
    if not isinstance(rec, Telemetry) or rule.metric not in rec.metrics:
        return False
    return bool(OPS[rule.op or ">="](rec.metrics[rule.metric], rule.threshold))


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    if not isinstance(rec, Telemetry) or rule.metric not in rec.metrics or mem is None:
        return None, None
    v = rec.metrics[rule.metric]
    above = OPS[rule.op or ">="](v, rule.threshold)
    edges: list[int] = mem.setdefault("edges", [])
    if above and not mem.get("above"):
        edges.append(rec.ts_ms)
    mem["above"] = above
    horizon = rec.ts_ms - int((rule.window_s or 0) * 1000)
    while edges and edges[0] < horizon:
        edges.pop(0)
    n = len(edges)
    return (Verdict.TRUE if n >= (rule.count or 0) else Verdict.FALSE), n
