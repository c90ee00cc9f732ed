"""Flood: a device sending far beyond its per-device budget (ingest dead-letters the excess as
`rate_limited`). Not evaluated per record — that would put a cost on every message — but from the
counts ingest already keeps per device and reports in its heartbeat (`rate_limited_devices`),
looked at once a second by alerts/flooding.py. `threshold`: messages cut within the last minute
before it raises; `calm_s`: seconds without a new cut before it clears."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import Verdict
from core.validation import Record

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "flood"
KEYS = frozenset({"threshold", "params"})
CALM_S = 10.0


def validate(rule: Rule) -> str | None:
    if not isinstance(rule.threshold, int | float) or isinstance(rule.threshold, bool) or rule.threshold < 1:
        return "a flood rule's threshold is the number of cut messages (>= 1) that raises it"
    calm = (rule.params or {}).get("calm_s", CALM_S)
    if not isinstance(calm, int | float) or calm <= 0:
        return "params.calm_s must be > 0"
    return None


def calm_s(rule: Rule) -> float:
    return float((rule.params or {}).get("calm_s", CALM_S))


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    return None, None  # never about one record (the engine does not call it per message)


def judge(rule: Rule, cut: int, quiet_s: float) -> Verdict:
    """A device's verdict from its cut count (last minute) and how long since its last new cut."""
    if quiet_s >= calm_s(rule):
        return Verdict.FALSE
    return Verdict.TRUE if cut >= float(rule.threshold or 1) else Verdict.KEEP
