"""Notification preferences of the people of the on-call roster: which of their channels they want,
and quiet hours (Beijing time, may run past midnight), set by each person on the dashboard's
/settings page and written by the alerts service (a `preferences` command; the store keeps them,
migration 0014, with who set them and when).

What they change, decided here only (`reach`):
- red always gets through, on every channel the roster has for the person, whatever they chose;
- below red, a person is reached only on the channels they chose, and not at all in their quiet hours.
  Such a notification is not held for later: the escalation goes on as ever, so if the quiet person
  does not acknowledge, the next tier (awake, on duty) is told on the roster's schedule. A duty officer
  back from quiet hours finds what is still open on the console, not a burst of stale messages.
- a tier whose people are all quiet is told all the same when there is no tier above it to escalate
  to (better woken than missed, as for a tier nobody of which is on shift) — of a call to act, not of
  a resolution.
A person cannot turn off every channel: at least one stays (and red uses all of them anyway).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.roster import CHANNEL_FIELDS, Person
from alerts.shelving import Cron, ShelfError, Weekly, parse_every
from alerts.store import Row, Store
from core.severity import Severity

RELOAD_S = 10.0  # another engine's service (a partition) may have written them: read again this often
_HHMM = re.compile(r"^\s*(\d{1,2})[:：](\d{2})\s*$")


class PreferenceError(ValueError):
    pass


@dataclass(frozen=True)
class Preferences:
    person: str  # roster id
    channels: frozenset[str]  # roster channel fields wanted below red
    quiet: str | None = None  # "22:00-07:00", Beijing time
    updated_by: str | None = None
    updated_at: str | None = None

    def window(self) -> Weekly | Cron | None:
        return parse_every(f"daily {self.quiet}") if self.quiet else None

    def is_quiet(self, at: float) -> bool:
        w = self.window()
        return w is not None and w.contains(at)

    def quiet_ends(self, at: float) -> float | None:
        """When the quiet hours in force at `at` end (epoch seconds), None if not quiet then."""
        w = self.window()
        return w.ends(at) if w is not None and w.contains(at) else None

    def as_json(self) -> dict[str, Any]:
        return {"person": self.person, "channels": [c for c in CHANNEL_FIELDS if c in self.channels],
                "quiet": self.quiet,
                "updated_by": self.updated_by, "updated_at": self.updated_at}

    @classmethod
    def of_row(cls, row: Row) -> Preferences:
        return cls(row["person"], frozenset(row.get("channels") or ()), row.get("quiet"), row.get("updated_by"),
                   row.get("updated_at"))


def quiet_text(start: str | None, end: str | None) -> str | None:
    """Quiet hours from two times of day ("22:00", "07:00"), canonical "22:00-07:00"; both empty: None."""
    a, b = (start or "").strip(), (end or "").strip()
    if not a and not b:
        return None
    ma, mb = _HHMM.match(a), _HHMM.match(b)
    if not (ma and mb):
        raise PreferenceError("免打扰时段请写成 22:00 至 07:00（北京时间，可跨午夜）")
    try:
        w = parse_every(f"daily {int(ma[1]):02d}:{ma[2]}-{int(mb[1]):02d}:{mb[2]}")
    except ShelfError:
        raise PreferenceError("免打扰时段的开始和结束须是不同的时刻（北京时间）") from None
    return w.text().removeprefix("daily ")


def checked(person: Person, channels: Iterable[str], quiet: str | None) -> tuple[list[str], str | None]:
    """The channels (those of the person's own, at least one) and quiet hours to keep, or PreferenceError."""
    own = [c for c in CHANNEL_FIELDS if getattr(person, c)]
    want = list(dict.fromkeys(channels))
    wrong = [c for c in want if c not in own]
    if wrong:
        raise PreferenceError(f"{person.name} 在值班表中没有这些通知渠道: {', '.join(wrong)}")
    if not want:
        raise PreferenceError("至少保留一个通知渠道（红色告警总是通过全部渠道通知）")
    if quiet:
        a, _, b = quiet.partition("-")
        quiet = quiet_text(a, b)
    return [c for c in CHANNEL_FIELDS if c in want], quiet or None


def reach(people: Sequence[Person], severity: str, at: float, prefs: dict[str, Preferences],
          last_tier: bool = False) -> tuple[list[Person], list[Person]]:
    """(who is told and on which of their channels, who is not: in their quiet hours) for one
    notification of `severity` at `at` (epoch seconds)."""
    if severity == Severity.RED:
        return list(people), []
    told: list[Person] = []
    quiet: list[Person] = []
    for p in people:
        pref = prefs.get(p.pid or "") if p.pid else None
        if pref is None:
            told.append(p)
            continue
        if pref.is_quiet(at):
            quiet.append(p)
            continue
        kept = dataclasses.replace(p, **{c: None for c in CHANNEL_FIELDS if c not in pref.channels})
        # Channels the roster no longer has for them: reached as the roster says, not by none.
        told.append(kept if any(getattr(kept, c) for c in CHANNEL_FIELDS) else p)
    if last_tier and quiet and not told:
        return list(people), []
    return told, quiet


class PreferenceBook:
    """The preferences in force, read from the store (again every `RELOAD_S`, and at once after a change
    here); written only by the alerts service's `preferences` command."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._prefs: dict[str, Preferences] = {}
        self._read_at = -RELOAD_S

    def current(self) -> dict[str, Preferences]:
        now = time.monotonic()
        if now - self._read_at >= RELOAD_S:
            with self._lock:
                self._prefs = {k: Preferences.of_row(r) for k, r in self.store.preferences().items()}
                self._read_at = now
        return self._prefs

    def set(self, person: Person, channels: Iterable[str], quiet: str | None, by: str, at: str) -> Preferences:
        if not person.pid:
            raise PreferenceError(f"{person.name} 不在值班表的人员名单 (people:) 中")
        keep, q = checked(person, channels, quiet)
        row = self.store.set_preferences(person.pid, keep, q, by, at)
        self._read_at = -RELOAD_S
        return Preferences.of_row(row)
