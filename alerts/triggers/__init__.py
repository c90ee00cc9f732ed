"""Trigger types, one a module (as Home Assistant's triggers/numeric_state.py, state.py, event.py):
each names the rule keys it owns (`KEYS`) and checks them (`validate`), then decides in one of two
ways, found by what it defines:

- per record, `evaluate(rule, rec, mem) -> (Verdict, value)`: what one message means for one rule
  (threshold, state, event, count, rate; absence too, for the message that ends a silence);
- over time, `scan(rules, view) -> Iterable[Finding]`: what holds now, given every rule of the type
  in force and a `ScanView`, a read-only snapshot the engine builds once per scan (absence, place,
  group). Optional beside it: `liveness(rules)` (its keywords for `Liveness.scan`), and
  `memory(rules, old)` + `track(mem, rec)` (what it keeps of each message between scans).

The engine owns the state: it raises, updates and resolves (for_s, hold-off, folding, watch and
reopening, shelves, notification, persistence); triggers only decide.

Verdicts: TRUE (the condition holds), FALSE (a clearing reading), KEEP (nothing changes: inside a
hysteresis band, or a reading that says nothing about a latched event) and None (not about this rule).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from core.contract import Alert, Device

if TYPE_CHECKING:
    from alerts.liveness import Liveness, Scan
    from alerts.rules import Rule

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
    "!=": operator.ne,
}
Key = tuple[str, str]  # (rule name, subject)


class Verdict(Enum):
    TRUE = "true"
    FALSE = "false"
    KEEP = "keep"


# Keys every rule may have, whatever its trigger.
COMMON_KEYS = frozenset({
    "name", "severity", "message", "kind", "trigger", "for_s", "holdoff_s", "suppressed_by", "source",
    "levels", "foldable", "notes", "folds", "watch_s", "title", "description",
})


@dataclass(frozen=True)
class Subject:
    """Who an alert is about: a device, or a place (compound / community / building)."""

    key: str
    community: str
    compound_id: str
    device_id: str
    kind: str
    lon: float | None
    lat: float | None

    @staticmethod
    def of(dev: Device) -> Subject:
        return Subject(dev.device_id, dev.community, dev.compound_id, dev.device_id, dev.kind, dev.lon, dev.lat)


class Act(Enum):
    """What a scan found about one (rule, subject)."""

    RAISE = "raise"  # it holds: raise the alert, or update the open one
    WAIT = "wait"  # it holds, not raised yet (a bigger place may be forming; nothing to point at)
    FOLD = "fold"  # it holds, and `parent`'s alert stands for it: an open one is folded under it
    CLEAR = "clear"  # it no longer holds: an open alert starts its hold-off, a waiting one is forgotten
    SILENT_IN_ALARM = "silent_in_alarm"  # the device went quiet in alarm: its alarms stay and say so


@dataclass(slots=True)
class Finding:
    """One decision of a scan trigger, for the engine to apply.

    A device's finding (`device` set) takes the per-record path (suppression, the fold window,
    levels) and its value is kept as the condition's latest reading; a place's (`place` set) is raised
    with the rule's severity. While a finding holds, the alerts of the rule's `folds` on its subject
    and on its `members` are folded under its alert."""

    rule: Rule
    subject: str  # a device id or a place id
    act: Act = Act.RAISE
    value: Any = None
    message: str = ""
    threshold: Any = None
    device: Device | None = None
    place: Subject | None = None
    members: tuple[str, ...] = ()  # device ids it stands for (they may lie in neighbouring places)
    parent: Key | None = None  # Act.FOLD: the alert that stands for this one

    @property
    def key(self) -> Key:
        return self.rule.name, self.subject

    @property
    def holds(self) -> bool:
        return self.act in (Act.RAISE, Act.WAIT, Act.FOLD)


@dataclass(frozen=True, slots=True)
class ScanView:
    """What a scan trigger may look at: built once per scan, never changed by a trigger."""

    now: float
    live: Liveness  # the registry's devices and when each was last heard
    scan: Scan  # who is silent, down, per place
    open: Mapping[Key, Alert]  # the open alerts, by (rule, subject)
    conditions: Mapping[Key, Any]  # what the engine keeps of each (rule, subject): `true_since_ts` ...
    alarmed: frozenset[str] = frozenset()  # devices with an open alarm of their own
    settled: bool = True  # every device had time to report since our feed (re)started: not seeing is a clear
    fold_window_s: float = 0.0  # how long a small place waits for a bigger one to form
    memory: Mapping[str, Any] | None = None  # trigger NAME -> what its `track` kept of the messages

    def memory_of(self, name: str) -> Any:
        return (self.memory or {}).get(name)

    def since(self, key: Key) -> float | None:
        """Wall time the condition of `key` began to hold (None: it does not yet)."""
        c = self.conditions.get(key)
        ts = getattr(c, "true_since_ts", None)
        return None if ts is None else ts / 1000
