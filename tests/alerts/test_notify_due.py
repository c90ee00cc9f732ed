"""Escalation's decider (`Escalation.due`): the next tier after `escalate_after_s` per tier without
an acknowledgement (counted from a return from a shelf or a reopening when there was one), a
reminder after `remind_every_s` since everyone was last told, and nothing once acknowledged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from alerts.notify import Due, Escalation, Notifier, load_roster
from core.contract import Alert
from core.timebase import iso

T0 = 1_800_000_000.0


def alert(severity: str, tier: int = 1, state: str = "active") -> Alert:
    return Alert("a-1", "gas_lel_high", severity, state, "yanhu", "YH-01", "G-1", "gas", "lel_pct", 30.0, 25,
                 110.79, 32.65, iso(T0), iso(T0), "可燃气体浓度 30 %LEL", escalation_tier=tier)


def test_the_next_tier_is_due_after_its_wait_counted_from_the_raise_or_a_return(tmp_path: Path) -> None:
    esc = Escalation(load_roster(), Notifier(tmp_path / "outbox.jsonl"))
    sev = next(s for s in esc.roster.escalate_after_s if esc.roster.escalate_after_s[s] < esc.roster.remind_every_s.get(
        s, float("inf")))
    after = esc.roster.escalate_after_s[sev]
    a = alert(sev)
    assert esc.due(a, T0 + after - 1) is None
    assert esc.due(a, T0 + after) == Due("escalate", 2)
    assert esc.due(a, T0 + after, since=T0 + 60) is None  # back from a shelf at T0 + 60: counts from there
    assert esc.due(a, T0 + 60 + after, since=T0 + 60) == Due("escalate", 2)
    assert esc.due(dataclasses.replace(a, state="acknowledged"), T0 + 10 * after) is None
    top = esc.roster.max_tier(a.community)
    assert esc.due(alert(sev, tier=top), T0 + 10 * after * top) == Due("remind", top)  # no tier past the top


def test_a_reminder_is_due_after_its_interval_since_everyone_was_last_told(tmp_path: Path) -> None:
    esc = Escalation(load_roster(), Notifier(tmp_path / "outbox.jsonl"))
    sev = next(iter(esc.roster.remind_every_s))
    every = esc.roster.remind_every_s[sev]
    top = alert(sev, tier=esc.roster.max_tier("yanhu"))  # nothing left to escalate to: only reminders
    assert esc.due(top, T0 + every - 1) is None
    assert esc.due(top, T0 + every) == Due("remind", top.escalation_tier or 1)
    assert esc.due(top, T0 + every, reminded=T0 + 100) is None  # told at T0 + 100: counts from then
    assert esc.due(top, T0 + 100 + every, reminded=T0 + 100) == Due("remind", top.escalation_tier or 1)
