"""Absence: no message from a device for `silent_factor` × its `interval_s` (wall time, which keeps
running when a device stops talking). Decided by the periodic scan over the liveness arrays
(alerts/liveness.py), not per record; a message from the device clears it. A device in alarm is not
raised for its silence (its alarm stays, and says so), nor is one whose place is down (the place's
alert stands for it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from alerts.liveness import LIMIT_FACTOR
from alerts.triggers import Act, Finding, ScanView, Verdict
from core.validation import Record, Status

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "absence"
KEYS = frozenset({"silent_factor"})
FACTOR = LIMIT_FACTOR  # when a rule leaves it out


def validate(rule: Rule) -> str | None:
    if not rule.silent_factor or rule.silent_factor <= 0:
        return "silent_factor must be > 0"
    return None


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    # An `offline` status (often the broker delivering the device's last will) is not the device talking.
    if isinstance(rec, Status) and rec.state != "online":
        return None, None
    return Verdict.FALSE, 0


def liveness(rules: list[Rule]) -> dict[str, float]:
    """A device never heard counts for `never_reported` once it is past the first rule's limit."""
    return {"limit_factor": float(rules[0].silent_factor or FACTOR)}


def scan(rules: list[Rule], view: ScanView) -> Iterable[Finding]:
    live, sc = view.live, view.scan
    folded = sc.compound_down[live.compound_of] | sc.community_down[live.community_of]
    for rule in rules:
        limit = float(rule.silent_factor or FACTOR) * live.interval
        due = ~sc.never & (sc.silent_s >= limit)
        if rule.kind is not None:
            due &= live.kind_mask(rule.kind)
        for dev_id in view.alarmed:  # in alarm and silent (folded or not): the alarm stays and says so
            i = live.index.get(dev_id)
            if i is not None and due[i]:
                yield Finding(rule, dev_id, Act.SILENT_IN_ALARM, device=live.devices[i])
        for i in np.nonzero(due & ~folded)[0]:
            dev = live.devices[int(i)]
            if (rule.name, dev.device_id) in view.open or dev.device_id in view.alarmed:
                continue  # already raised (its value is the silence at raise time), or on its alarm
            if any((r, dev.device_id) in view.open for r in rule.suppressed_by):
                continue
            silent_s = float(sc.silent_s[i])
            yield Finding(rule, dev.device_id, Act.RAISE, round(silent_s, 1),
                          rule.render(value=round(silent_s), silent_s=silent_s, interval_s=dev.interval_s),
                          float(limit[i]), device=dev)
