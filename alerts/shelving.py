"""Shelving / maintenance windows (ISA-18.2 "shelved"): a device, a compound or a rule is shelved for a
set time with a reason (the gas company repairing a main). Alerts raised under a shelf are recorded
and listed, with a `shelved` step on their timeline, but not published to on-call tools nor notified;
when the shelf runs out they come back by themselves (an `unshelved` step, published, notified).

Life-safety alarms are never shelved silently: shelving a gas rule (or a rule that can be red), a gas
device, or a device / compound / rule with an open red or gas alert is refused unless a second person
— another existing operator or admin account — approves it (`approved_by`); such a shelf is marked
`life_safety` and shown on the console and the wall while it lasts. A red alert is published and
notified under any shelf (the engine asks `never_silenced`).
The store keeps the shelves (migration 0007); the engine reads the live ones every tick, so a shelf
written by the CLI or the dashboard applies within a second without a restart.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from alerts.rules import Rule
from alerts.store import Store
from core.contract import Alert
from core.severity import RANK, Severity
from core.timebase import iso

GAS = "gas"
APPROVER_ROLES = ("operator", "admin")  # who may be the second person of a life-safety shelf

SCOPES = ("device", "compound", "rule")
MAX_S = 7 * 24 * 3600  # a week: longer is not maintenance, it is a rule change
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


class ShelfError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """'90s', '45m', '2h', '1d' or plain seconds."""
    m = _DUR.match(text)
    if not m:
        raise ShelfError(f"bad duration {text!r}: use e.g. 30m, 2h, 1d")
    s = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < s <= MAX_S:
        raise ShelfError(f"a shelf lasts more than 0 and at most {MAX_S // 86400} days")
    return s


def never_silenced(severity: str) -> bool:
    """A red alert is published and notified under any shelf."""
    return severity == Severity.RED


def shelf_for(shelves: Iterable[dict[str, Any]], alert: Alert) -> dict[str, Any] | None:
    """The live shelf an alert falls under (its rule, its device or its compound), if any."""
    for s in shelves:
        if ((s["scope"] == "rule" and s["target"] == alert.rule)
                or (s["scope"] == "device" and alert.device_id and s["target"] == alert.device_id)
                or (s["scope"] == "compound" and alert.compound_id and s["target"] == alert.compound_id)):
            return s
    return None


def life_safety(severity: str, kind: str | None) -> bool:
    """Red, or anything about gas."""
    return severity == Severity.RED or kind == GAS


def rule_is_life_safety(rule: Rule) -> bool:
    return rule.kind == GAS or RANK.get(rule.severity, 0) >= RANK[Severity.RED] or any(
        lv.severity == Severity.RED for lv in rule.levels)


def why_life_safety(store: Store, scope: str, target: str, rules: Iterable[Rule] = (),
                    device_kind: Callable[[str], str | None] | None = None) -> str | None:
    """Why shelving this would silence a life-safety alarm (in words), or None."""
    for r in rules:
        if scope == "rule" and r.name == target and rule_is_life_safety(r):
            return f"规则 {target} 是燃气/红色告警规则 (life-safety rule)"
    if scope == "device" and device_kind is not None and device_kind(target) == GAS:
        return f"设备 {target} 是燃气探测器 (gas device)"
    col = {"device": "device_id", "compound": "compound_id", "rule": "rule"}[scope]
    for a in store.list(state="active,acknowledged", limit=5000):
        if getattr(a, col) == target and life_safety(a.severity, a.kind):
            return f"{target} 有未解除的红色/燃气告警 {a.alert_id} ({a.rule}, {a.severity}): {a.message}"
    return None


def shelve(store: Store, scope: str, target: str, duration_s: float, reason: str, by: str,
           now: float | None = None, *, approved_by: str | None = None,
           approver_role: Callable[[str], str | None] | None = None, rules: Iterable[Rule] = (),
           device_kind: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Shelve a device, compound or rule; a life-safety one only with a second person's approval:
    `approved_by` must be an account other than `by` whose role (`approver_role`) is operator or admin."""
    if scope not in SCOPES:
        raise ShelfError(f"scope must be one of {SCOPES}")
    if not target.strip() or not reason.strip() or not by.strip():
        raise ShelfError("a shelf needs a target, a reason and who shelved it")
    if not 0 < duration_s <= MAX_S:
        raise ShelfError(f"a shelf lasts more than 0 and at most {MAX_S // 86400} days")
    target, by = target.strip(), by.strip()
    why = why_life_safety(store, scope, target, rules, device_kind)
    approver = (approved_by or "").strip() or None
    if why is not None:
        if approver is None:
            raise ShelfError(f"refused: {why}. 生命安全告警不能静默搁置: 需要另一名值班员/管理员批准 "
                             "(--approved-by ACCOUNT, a second person's account)")
        if approver == by:
            raise ShelfError("refused: the approver must be a second person, not the one who shelves "
                             "(批准人不能是搁置人本人)")
        role = approver_role(approver) if approver_role is not None else None
        if role not in APPROVER_ROLES:
            raise ShelfError(f"refused: {approver!r} is not an existing operator or admin account "
                             "(批准人须为现有值班员或管理员账号)")
    t = time.time() if now is None else now
    until = t + duration_s
    shelf_id = store.shelve(scope, target, reason.strip(), by, until, iso(t), iso(until),
                            approved_by=approver, life_safety=why is not None)
    return next(s for s in store.shelves() if s["shelf_id"] == shelf_id)
