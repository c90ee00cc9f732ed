"""Absence: no message from a device for `silent_factor` × its `interval_s` (wall time, which keeps
running when a device stops talking). Evaluated by the periodic liveness scan (alerts/liveness.py),
not per record; a message from the device clears it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts.triggers import Verdict
from core.validation import Record, Status

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "absence"
KEYS = frozenset({"silent_factor"})


def validate(rule: Rule) -> str | None:
    if not rule.silent_factor or rule.silent_factor <= 0:
        return "silent_factor must be > 0"
    return None


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    # An `offline` status (often the broker delivering the device's last will) is not the device talking.
    if isinstance(rec, Status) and rec.state != "online":
        return None, None
    return Verdict.FALSE, 0
