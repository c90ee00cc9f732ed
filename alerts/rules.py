"""Alert rules: loaded from YAML (bundled `rules.yaml` or `SC_ALERTS_RULES_FILE`) and checked."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.contract import KIND_EVENTS, KINDS, METRICS, STATUS_STATES
from core.severity import Severity
from core.validation import Event, Record, Status, Telemetry

BUNDLED_RULES = Path(__file__).with_name("rules.yaml")

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
    "!=": operator.ne,
}


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    message: str
    kind: str | None = None
    metric: str | None = None
    op: str | None = None
    threshold: float | bool | None = None
    for_s: float = 0.0
    status: str | None = None
    event: str | None = None
    silent_factor: float | None = None
    # Rules of the same device whose open alert makes this one redundant (a warning under a
    # critical alarm): it is not raised while they are open, and is closed when they are raised.
    suppressed_by: tuple[str, ...] = ()

    def check(self, rec: Record) -> tuple[bool | None, Any]:
        """(condition, value) for one record; condition None when the record says nothing here."""
        if self.kind is not None and rec.device.kind != self.kind:
            return None, None
        if isinstance(rec, Telemetry) and self.metric is not None and self.metric in rec.metrics:
            v = rec.metrics[self.metric]
            return OPS[self.op or ">="](v, self.threshold), v
        if isinstance(rec, Status) and self.status is not None:
            return rec.state == self.status, rec.state
        if isinstance(rec, Event) and self.event is not None and rec.event == self.event:
            return True, rec.event
        return None, None

    def render(self, **fields: Any) -> str:
        unit = METRICS.get(self.kind or "", {}).get(self.metric or "")
        values = {"value": None, "threshold": self.threshold, "detail": "", "interval_s": 0.0,
                  "silent_s": 0.0, "unit": unit.unit if unit else ""}
        values.update(fields)
        try:
            return self.message.format(**values).strip()
        except (ValueError, TypeError, KeyError):
            return f"{self.name}: {values['value']}"


def _rule_from(d: dict[str, Any], where: str) -> Rule:
    known = set(Rule.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(d, dict):
        raise RuleError(f"{where}: a rule is a mapping")
    if "suppressed_by" in d:
        d = {**d, "suppressed_by": tuple(d["suppressed_by"] or ())}
    try:
        rule = Rule(**d)
    except TypeError as exc:
        raise RuleError(f"{where}: {exc}") from None
    if rule.severity not in Severity.__members__.values():
        raise RuleError(f"{where}: severity must be one of red/orange/yellow/blue")
    triggers = [rule.metric is not None, rule.status is not None, rule.event is not None,
                rule.silent_factor is not None]
    if not any(triggers) or (rule.silent_factor is not None and sum(triggers) > 1):
        raise RuleError(f"{where}: needs exactly one of metric, status, event, silent_factor")
    if rule.kind is not None and rule.kind not in KINDS:
        raise RuleError(f"{where}: unknown kind {rule.kind!r}")
    if rule.metric is not None:
        if rule.kind is None or rule.metric not in METRICS[rule.kind]:
            raise RuleError(f"{where}: metric {rule.metric!r} is not a {rule.kind} metric")
        if rule.op not in OPS or rule.threshold is None:
            raise RuleError(f"{where}: a metric rule needs op (one of {list(OPS)}) and threshold")
    if rule.status is not None and rule.status not in STATUS_STATES:
        raise RuleError(f"{where}: status must be online or offline")
    if rule.event is not None and (rule.kind is None or rule.event not in KIND_EVENTS[rule.kind]):
        raise RuleError(f"{where}: event {rule.event!r} is not sent by {rule.kind} devices")
    return rule


def load_rules(path: Path | None = None) -> list[Rule]:
    p = path or BUNDLED_RULES
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{p}: {exc}") from None
    items = (doc or {}).get("rules") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise RuleError(f"{p}: expected a mapping with a non-empty list `rules`")
    rules = [_rule_from(d, f"{p}: rule {i + 1}") for i, d in enumerate(items)]
    names = [r.name for r in rules]
    for r in rules:
        unknown_refs = set(r.suppressed_by) - set(names)
        if unknown_refs:
            raise RuleError(f"{p}: rule {r.name}: suppressed_by names unknown rules {sorted(unknown_refs)}")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RuleError(f"{p}: duplicate rule names {sorted(dup)}")
    return rules
