"""Closing while the danger is still measured (contract §4): THE decision every close path asks.

A hand resolve (the /api, the console and alert page buttons, `smartcommunity resolve`) and an
archive (归档) of an alert whose condition still holds — its latest reading is still at or past the
threshold, or the hold-off has not run since the last such reading — is refused with that reading,
unless the person overrides with a stated reason; then it closes, the override, its reason, who gave
it and the reading it was given against are on the `resolved` step, and the condition is put under
watch (`watch_s` of the rule): holding again within it reopens the same alert (alerts/engine.py).

What the condition is comes from the engine's durable state in the store (`conditions`), which the
engine writes at once when an alert is raised or reopened and at every tick (`SC_ALERTS_TICK_S`)
while readings of an open alert come in; a device silent while in alarm keeps its last reading:
absence of evidence is not a clear.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.rules import BUNDLED_RULES, Rule, RuleError, RuleSet, load_ruleset
from alerts.store import Store
from core.contract import METRICS, Alert, AlertState
from core.settings import Settings
from core.timebase import iso, local_time

log = logging.getLogger(__name__)

# Triggers whose condition is a measurement of the danger. Silence and place alerts are not; nor is
# an event (a camera tamper), which its rule lets a person end by hand once they have looked.
MEASURED = frozenset({"threshold", "count", "rate", "state", "group", "fluctuation"})


@dataclass(frozen=True, slots=True)
class Live:
    """The danger is still measured: the latest reading of the alert's condition."""

    alert_id: str
    value: Any
    at: str  # when that reading came (ISO-8601 UTC)
    holds: bool  # True: the latest reading is at/past the threshold; False: cleared, hold-off still running
    clear_since: str | None
    holdoff_s: float
    metric: str | None
    threshold: Any
    unit: str

    def words(self) -> str:
        """The reading as staff read it: "62.0 %LEL (11-29 03:12:05)"."""
        v = f"{self.value:.1f}" if isinstance(self.value, float) else str(self.value)
        return f"{v}{' ' + self.unit if self.unit else ''}（{local_time(self.at)}）"

    def error(self) -> str:
        if self.holds:
            why = f"仍在报警: 最新读数 {self.words()} 仍达到报警值 {self.threshold}"
        else:
            why = (f"读数 {self.words()} 已回落, 但恢复确认期 {self.holdoff_s:g} 秒未满"
                   f"（自 {local_time(self.clear_since or self.at)} 起）")
        return (f"{why}; 不能解除。如确需解除, 请复测并写明理由后强制解除 (override + note). "
                f"The danger is still measured on alert {self.alert_id}.")

    def as_json(self) -> dict[str, Any]:
        """The contract's 409 body ({"error", "value", "at"}) and, alongside it, what the page shows."""
        return {"error": self.error(), "value": self.value, "at": self.at, "holds": self.holds,
                "clear_since": self.clear_since, "holdoff_s": self.holdoff_s, "metric": self.metric,
                "threshold": self.threshold, "unit": self.unit, "alert_id": self.alert_id}


class Policy:
    """The rules' hold-off and watch periods, from the rules file the engine runs (re-read when it
    changes; a bad edit keeps the last good rules, as the engine does)."""

    def __init__(self, holdoff_s: float, watch_s: float, rules_file: Path | None = None) -> None:
        self.default_holdoff_s = holdoff_s
        self.default_watch_s = watch_s
        self.path = rules_file or BUNDLED_RULES
        self._lock = threading.Lock()
        self._sig: tuple[int, int] | None = None
        self._rules = RuleSet([])

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.alert_holdoff_s, settings.alerts_watch_s,
                   Path(settings.alerts_rules_file) if settings.alerts_rules_file else None)

    def ruleset(self) -> RuleSet:
        try:
            st = os.stat(self.path)
            sig: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            sig = None
        with self._lock:
            if sig != self._sig:
                try:
                    self._rules = load_ruleset(self.path)
                except (RuleError, OSError) as exc:
                    log.error("rules file refused, the guard keeps the last good rules: %s", exc)
                self._sig = sig
            return self._rules

    def rule(self, alert: Alert) -> Rule | None:
        rs = self.ruleset()
        ov_dev, ov_cmp = rs.variants()
        base = next((r for r in rs.rules if r.name == alert.rule), None)
        return ov_dev.get((alert.rule, alert.device_id)) or ov_cmp.get((alert.rule, alert.compound_id)) or base

    def holdoff_s(self, rule: Rule | None) -> float:
        return rule.holdoff_s if rule is not None and rule.holdoff_s is not None else self.default_holdoff_s

    def watch_s(self, rule: Rule | None) -> float:
        return rule.watch_s if rule is not None and rule.watch_s is not None else self.default_watch_s


def danger(store: Store, alert: Alert, policy: Policy, now: float | None = None) -> Live | None:
    """The alert's condition as last measured, if it still holds (or its hold-off is still running)."""
    now = time.time() if now is None else now
    rule = policy.rule(alert)
    if rule is not None and (rule.latch or (rule.trigger or "threshold") not in MEASURED):
        return None  # only a person ends a latched alarm; silence and place alerts are no reading
    got = store.condition_of(alert.alert_id)
    if got is None or got[2] is None or got[2]["last_value"] is None:
        return None  # nothing measured (a restart that knew nothing of it): a person decides
    c = got[2]
    hold = policy.holdoff_s(rule)
    holds = c["true_since_ts"] is not None and c["clear_since"] is None
    clearing = c["clear_since"] is not None and now - float(c["clear_since"]) < hold
    if not holds and not clearing:
        return None
    unit = METRICS.get(alert.kind, {}).get(alert.metric or "")
    return Live(alert.alert_id, c["last_value"], iso(float(c["last_evidence"] or now)), holds,
                iso(float(c["clear_since"])) if c["clear_since"] is not None else None, hold, alert.metric,
                alert.threshold, unit.unit if unit else "")


def device_danger(store: Store, alert: Alert, policy: Policy, now: float | None = None) -> Live | None:
    """Is the alert's device still in alarm: its own condition, or another open alert on it?"""
    live = danger(store, alert, policy, now)
    if live is not None or not alert.device_id:
        return live
    for other in store.list(state="active,acknowledged", device_id=alert.device_id, limit=50):
        if other.alert_id != alert.alert_id and (live := danger(store, other, policy, now)) is not None:
            return live
    return None


@dataclass(frozen=True, slots=True)
class Closed:
    """What a close came to: `alert` (new state on 200, current one on a refusal), `status` (200,
    400 override without a reason, 404 unknown, 409 already resolved or the danger still measured),
    `live`: the reading that refused it, or (on 200) that it was closed over — an override."""

    alert: Alert | None
    status: int
    error: str | None = None
    live: Live | None = None

    def body(self) -> dict[str, Any]:
        if self.live is not None and self.status == 409:
            return {**self.live.as_json(), "status": 409}
        return {"error": self.error, "status": self.status}


UNSIGNED = "未署名"  # an override by a caller who gave no name is still an override, and says so


def override_data(live: Live | None, note: str | None, override: bool) -> dict[str, Any]:
    """What a `resolved` / `archived` step says of an override (empty when none was needed)."""
    if live is None or not override:
        return {}
    return {"override": True, "reason": note, "value": live.value, "at": live.at, "holds": live.holds}


def check_override(live: Live | None, override: bool, note: str | None, alert: Alert) -> Closed | None:
    """None: go ahead; else the refusal."""
    if live is None:
        return None
    if not override:
        return Closed(alert, 409, live.error(), live)
    if not (note or "").strip():
        return Closed(alert, 400, "强制解除必须写明理由 (an override needs a non-empty \"note\": the reason)", live)
    return None


def resolve(store: Store, policy: Policy, alert_id: str, by: str | None, note: str | None, *,
            override: bool = False, now: float | None = None) -> Closed:
    """Resolve by hand, unless the danger is still measured and nobody overrode with a reason."""
    now = time.time() if now is None else now
    cur = store.get(alert_id)
    if cur is None:
        return Closed(None, 404, f"no alert {alert_id}")
    if cur.state == AlertState.RESOLVED:
        return Closed(cur, 409, f"alert {alert_id} is already {cur.state}")
    live = danger(store, cur, policy, now)
    refused = check_override(live, override, note, cur)
    if refused is not None:
        return refused
    if live is not None and not (by or "").strip():
        by = UNSIGNED
    done = store.resolve(alert_id, iso(now), note=note, by=by, data=override_data(live, note, override),
                         watch_s=policy.watch_s(policy.rule(cur)))
    if done is None:  # resolved by someone else meanwhile
        again = store.get(alert_id)
        return Closed(again, 409, f"alert {alert_id} is already {again.state if again else 'gone'}")
    if live is not None:
        log.warning("alert %s closed by %s OVER a live reading %s: %s", alert_id, by, live.words(), note)
    return Closed(done, 200, live=live)  # `live` set: this close was an override
