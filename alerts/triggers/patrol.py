"""Patrols (巡检): a patrol plan whose latest round ended undone. Decided by the periodic scan over the
patrol book (alerts/patrols.py: the plans in force and their recent check-ins, which the alerts service
keeps current), one alert per plan; its value is the number of missed rounds in a row, so a rule's
level (e.g. at 2) raises a second miss a severity. It clears once the round in progress is done."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from alerts.patrols import PatrolBook, day_text
from alerts.triggers import Act, Finding, ScanView, Subject

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "patrol"
KEYS = frozenset[str]()


def validate(rule: Rule) -> str | None:
    return None


def memory(rules: list[Rule], old: Any) -> PatrolBook:
    """The patrol book carries over a reload of the rules."""
    return old if isinstance(old, PatrolBook) else PatrolBook()


def scan(rules: list[Rule], view: ScanView) -> Iterable[Finding]:
    from alerts.message import place_label  # alerts.message reads rule titles: imported once rules are

    book = view.memory_of(NAME)
    if not isinstance(book, PatrolBook):
        return
    for rule in rules:
        for plan in book.plans:
            st = book.status(plan, view.now)
            key = (rule.name, plan.plan_id)
            if st.overdue:
                first = plan.checkpoints[0]
                where = plan.segment or place_label(plan.community, plan.compound_id)
                msg = rule.render(value=st.missed, n=st.missed, place=where, plan=plan.name, who=plan.who_name,
                                  due=day_text(st.round_end), every=plan.every_words())
                yield Finding(rule, plan.plan_id, Act.RAISE, st.missed, msg, 1,
                              place=Subject(plan.plan_id, plan.community, plan.compound_id, "", "",
                                            first.lon, first.lat))
            elif key in view.open or key in view.conditions:
                yield Finding(rule, plan.plan_id, Act.CLEAR)
