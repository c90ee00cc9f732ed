"""A device event (`event: tamper`). An event has no "off" message, so the rule says how it ends:
`clear_metric` + `clear_op` + `clear_threshold` — a reading after the last event that shows the
device normal again (e.g. a camera's frame rate) starts the hold-off — or `latch: true`: only a
person closes it. Without either, the alert stays until a person resolves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import OPS, Verdict
from core.validation import Event, Record, Telemetry

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "event"
KEYS = frozenset({"event", "clear_metric", "clear_op", "clear_threshold", "latch"})


def validate(rule: Rule) -> str | None:
    from core.contract import KIND_EVENTS, METRICS

    if rule.kind is None or rule.event not in KIND_EVENTS[rule.kind]:
        return f"event {rule.event!r} is not sent by {rule.kind} devices"
    if rule.clear_metric is not None:
        if rule.clear_metric not in METRICS[rule.kind]:
            return f"clear_metric {rule.clear_metric!r} is not a {rule.kind} metric"
        if rule.clear_op not in OPS or rule.clear_threshold is None:
            return "clear_metric needs clear_op and clear_threshold"
        if rule.latch:
            return "a latched event rule is closed by hand: no clear_metric"
    return None


def wants_memory(rule: Rule, rec: Record) -> bool:
    """Memory (the last event's time) is kept from the first event on, not for every camera."""
    return isinstance(rec, Event) and rec.event == rule.event


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    if isinstance(rec, Event):
        if rec.event != rule.event:
            return None, None
        if mem is not None:
            mem["last_event_ts"] = rec.ts_ms
        return Verdict.TRUE, rec.event
    if rule.latch or rule.clear_metric is None or not isinstance(rec, Telemetry):
        return None, None
    if rule.clear_metric not in rec.metrics:
        return None, None
    if mem is None or rec.ts_ms <= int(mem.get("last_event_ts", 0)):
        return None, None  # a reading from before the event says nothing about it
    v = rec.metrics[rule.clear_metric]
    return (Verdict.FALSE if OPS[rule.clear_op or ">="](v, rule.clear_threshold) else Verdict.KEEP), v
