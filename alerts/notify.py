"""Telling on-call staff: who (the roster, alerts/roster.py), when (raise, escalation, resolution),
and what (alerts/message.py). Each notification is appended to the outbox
(`SC_DATA_DIR/alerts/outbox.jsonl`), from which every configured channel delivers it on its own
(alerts/delivery.py): the engine never waits for a robot, a mail server or a gateway.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alerts.audience import in_scope
from alerts.delivery import BaseOutbox, Outbox
from alerts.message import Message, Places, compose
from alerts.preferences import Preferences, reach
from alerts.roster import Person, Roster, load_roster
from alerts.timeline import Event
from core.contract import Alert
from core.staff import Scope
from core.timebase import epoch, iso

log = logging.getLogger(__name__)

__all__ = ["Due", "Escalation", "Notifier", "load_roster"]

Record = Callable[[str, str, dict[str, Any]], None]  # (alert_id, event, data): a timeline step


class Notifier:
    """Composes the message once and appends it, with its recipients, to the outbox."""

    def __init__(self, outbox: Path | BaseOutbox, places: Places | None = None, public_url: str | None = None,
                 record: Record | None = None) -> None:
        self.outbox = outbox if isinstance(outbox, BaseOutbox) else Outbox(outbox)
        self.places = places or Places()
        self.public_url = public_url
        self.record = record

    def notify(self, alert: Alert, event: str, tier: int, contacts: list[Person]) -> dict[str, Any]:
        place = self.places.of(alert.community, alert.compound_id, alert.device_id)
        message = compose(alert, event, place, tier=tier, public_url=self.public_url)
        return self.append(message, contacts, event=event, tier=tier, alert=alert)

    def append(self, message: Message, contacts: list[Person], *, event: str, tier: int = 1,
               alert: Alert | None = None, community: str | None = None) -> dict[str, Any]:
        entry = {
            "at": time.time(), "event": event, "tier": tier, "to": [c.as_json() for c in contacts],
            "alert_id": alert.alert_id if alert else message.alert_id,
            "severity": alert.severity if alert else message.severity,
            "community": alert.community if alert else community,
            "text": message.plain(), "message": message.as_json(),
            "alert": alert.as_json() if alert else None,
        }
        return self.outbox.append(entry)


@dataclass(frozen=True, slots=True)
class Due:
    """What an unacknowledged alert is due now: the next tier told, or everyone told so far reminded."""

    what: Literal["escalate", "remind"]
    tier: int


class Escalation:
    """Tier 1 is told when an alert is raised; while nobody acknowledges it, the next tier is
    told every `escalate_after_s[severity]`; everyone told hears of the resolution. Who is on a
    tier depends on the shift at that moment (alerts/roster.py); who of them is told, and on which
    channels, on their own preferences (`preferences`: alerts/preferences.py decides; red always)."""

    def __init__(self, roster: Roster | Callable[[], Roster], notifier: Notifier,
                 preferences: Callable[[], dict[str, Preferences]] | None = None,
                 clock: Callable[[], float] = time.time,
                 scopes: Callable[[], dict[str, list[Scope]]] | None = None) -> None:
        self._roster = roster
        self.notifier = notifier
        self.preferences = preferences
        self.scopes = scopes  # who stands for an account with a scope (alerts/audience.py)
        self.clock = clock

    @property
    def roster(self) -> Roster:
        r = self._roster
        return r if isinstance(r, Roster) else r()

    def tell(self, alert: Alert, event: str, tier: int, contacts: list[Person]) -> list[Person]:
        """Notify `contacts` of one event as their preferences allow; those in their quiet hours are
        not told, and the timeline says so (`quiet` step); nor is anyone whose account's scope does not
        hold the alert. Returns who was told."""
        if self.scopes is not None:
            contacts = in_scope(contacts, alert, self.scopes())
        if self.preferences is not None:
            at = self.clock()
            # Nobody above to escalate to: a call to act reaches them all the same (news of a close waits).
            last = event != "resolved" and tier >= self.roster.max_tier(alert.community)
            prefs = self.preferences()
            contacts, quiet = reach(contacts, alert.severity, at, prefs, last_tier=last)
            if quiet and self.notifier.record is not None:
                ends = [e for p in quiet if (e := prefs[p.pid or ""].quiet_ends(at)) is not None]
                self.notifier.record(alert.alert_id, Event.QUIET, {
                    "event": event, "tier": tier, "people": [p.name for p in quiet],
                    "until": iso(min(ends)) if ends else None})
        self.notifier.notify(alert, event, tier, contacts)
        return contacts

    def raised(self, alert: Alert) -> None:
        self.tell(alert, "raised", 1, self.roster.contacts(alert.community, 1))

    def due_tier(self, alert: Alert, now: float) -> int | None:
        """The tier to escalate to now, or None."""
        roster = self.roster
        after = roster.escalate_after_s.get(alert.severity)
        tier = alert.escalation_tier or 1
        if after is None or alert.state != "active" or tier >= roster.max_tier(alert.community):
            return None
        return tier + 1 if now - epoch(alert.started_at) >= after * tier else None

    def due(self, alert: Alert, now: float, since: float | None = None, reminded: float | None = None) -> Due | None:
        """The decider the engine asks of each open, notified alert at every tick. `since`: when it
        came back from a shelf or was reopened (the next tier counts from then, not from its raise);
        `reminded`: when everyone told was last told (an escalation tells, too)."""
        tier = self.due_tier(alert if since is None else dataclasses.replace(alert, started_at=iso(since)), now)
        if tier is not None:
            return Due("escalate", tier)
        last = reminded if reminded is not None else since or epoch(alert.started_at)
        if self.reminder_due(alert, last, now):
            return Due("remind", alert.escalation_tier or 1)
        return None

    def told_at(self, alert: Alert, tier: int) -> list[str]:
        """The names of the people a tier reaches now (the escalation's timeline step names them)."""
        return [p.name for p in self.roster.contacts(alert.community, tier)]

    def escalated(self, alert: Alert) -> None:
        """Tell the tier the alert was escalated to (the engine wrote the step, with the same names)."""
        tier = alert.escalation_tier or 1
        self.tell(alert, "escalated", tier, self.roster.contacts(alert.community, tier))

    def _told(self, alert: Alert, upto: int) -> dict[str, Person]:
        """Everyone tiers 1..upto reached when the alert was raised."""
        roster = self.roster
        told: dict[str, Person] = {}
        for t in range(1, upto + 1):
            for p in roster.contacts(alert.community, t, epoch(alert.started_at)):
                told.setdefault(p.pid or p.name, p)
        return told

    def told(self, alert: Alert) -> list[Person]:
        """Everyone the alert has reached so far: each tier up to its current one."""
        return list(self._told(alert, alert.escalation_tier or 1).values())

    def resolved(self, alert: Alert) -> None:
        self.tell(alert, "resolved", alert.escalation_tier or 1, self.told(alert))

    def reminder_due(self, alert: Alert, last: float, now: float) -> bool:
        """Unacknowledged, and `remind_every_s[severity]` since `last` (raise or previous reminder)."""
        every = self.roster.remind_every_s.get(alert.severity)
        return every is not None and alert.state == "active" and now - last >= every

    def remind(self, alert: Alert) -> list[Person]:
        """Tell everyone told so far again; returns them (the timeline step names them)."""
        return self.tell(alert, "reminder", alert.escalation_tier or 1, self.told(alert))

    def reopened(self, alert: Alert) -> None:
        """复燃: everyone told of it before (and who is on shift now on those tiers), and the tier it
        was escalated to on reopening."""
        tier = alert.escalation_tier or 1
        told = self._told(alert, tier)
        for t in range(1, tier + 1):
            for p in self.roster.contacts(alert.community, t):
                told.setdefault(p.pid or p.name, p)
        self.tell(alert, "reopened", tier, list(told.values()))
