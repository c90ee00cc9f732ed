"""The on-call roster: who is told of an alert, by which channels, on which shift, and who next.

File (YAML, `SC_ALERTS_ROSTER_FILE`, default the bundled `alerts/oncall.yaml`):

    escalate_after_s: {red: 120, orange: 300, yellow: 900}   # unacknowledged this long -> next tier
    remind_every_s: {red: 300, orange: 900}                 # unacknowledged: everyone told, told again
    holidays: [2026-10-01, 2026-10-02]                      # Beijing dates
    shifts:
      day:   {hours: "08:00-18:00", weekdays: [1, 2, 3, 4, 5], holidays: skip}
      night: {hours: "18:00-08:00"}                          # past midnight: counts as the start day
    people:
      zhang: {name: 张三, phone: "13800000001", wecom: "13800000001", dingtalk: "13800000001",
              email: zhang@example.cn}
    tiers:
      yanling:                       # the community's own tiers first ...
        - [{person: zhang, shift: day}, {person: li, shift: night}]
      "*":                           # ... then these, after every community's own
        - [{person: wang}]

A tier lists people (by `person:` id, or inline `{name:, phone:, ...}`), each optionally limited to a
shift (a name from `shifts:` or an inline one). `weekdays` are ISO (1 = Monday); `holidays: only`
means only on listed holidays, `skip` never on them; without it a holiday counts by its weekday.
If nobody of a tier is on shift, everyone of that tier is told (better woken than missed).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.configfile import ConfigError, LineDict, line_of, load_yaml
from core.severity import SEVERITIES
from core.timebase import beijing

BUNDLED_ROSTER = Path(__file__).with_name("oncall.yaml")
CHANNEL_FIELDS = ("phone", "wecom", "dingtalk", "email")  # how a person can be reached
_HOURS_RE = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)-([01]?\d|2[0-4]):([0-5]\d)$")
_MOBILE_RE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Person:
    name: str
    pid: str | None = None
    phone: str | None = None  # SMS / voice gateway
    wecom: str | None = None  # mobile to @ in a WeCom group robot
    dingtalk: str | None = None  # mobile to @ in a DingTalk group robot
    email: str | None = None

    def as_json(self) -> dict[str, str]:
        out = {"name": self.name}
        for k in ("pid", *CHANNEL_FIELDS):
            v = getattr(self, k)
            if v:
                out[k] = v
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Person:
        return cls(**{k: d.get(k) for k in ("name", "pid", *CHANNEL_FIELDS)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Shift:
    start_min: int = 0
    end_min: int = 24 * 60
    weekdays: frozenset[int] = frozenset(range(1, 8))
    holidays: str | None = None  # None | "only" | "skip"

    def covers(self, when: dt.datetime, holiday_dates: frozenset[dt.date]) -> bool:
        m = when.hour * 60 + when.minute
        day = when.date()
        if self.start_min < self.end_min:
            if not self.start_min <= m < self.end_min:
                return False
        elif self.start_min > self.end_min:  # past midnight: the early hours belong to the day before
            if m >= self.start_min:
                pass
            elif m < self.end_min:
                day = day - dt.timedelta(days=1)
            else:
                return False
        is_holiday = day in holiday_dates
        if self.holidays == "only":
            return is_holiday
        if self.holidays == "skip" and is_holiday:
            return False
        return day.isoweekday() in self.weekdays


ALWAYS = Shift()


@dataclass(frozen=True)
class Duty:
    person: Person
    shift: Shift = ALWAYS


@dataclass(frozen=True)
class Roster:
    tiers: dict[str, list[list[Duty]]]
    escalate_after_s: dict[str, float]
    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    remind_every_s: dict[str, float] = field(default_factory=dict)  # unacknowledged: told again this often
    source: str = ""

    def chain(self, community: str) -> list[list[Duty]]:
        return self.tiers.get(community, []) + self.tiers.get("*", [])

    def contacts(self, community: str, tier: int, at: float | None = None) -> list[Person]:
        """The people of a tier on shift at `at` (epoch seconds, default now); all of it if nobody is."""
        chain = self.chain(community)
        if not 0 < tier <= len(chain):
            return []
        when = beijing(at)
        duties = chain[tier - 1]
        on = [d.person for d in duties if d.shift.covers(when, self.holidays)]
        return on or [d.person for d in duties]

    def max_tier(self, community: str) -> int:
        return len(self.chain(community))

    def people(self) -> list[Person]:
        seen: dict[str, Person] = {}
        for chain in self.tiers.values():
            for tier in chain:
                for d in tier:
                    seen.setdefault(d.person.pid or d.person.name, d.person)
        return list(seen.values())


def _parse_minutes(hh: str, mm: str) -> int:
    return int(hh) * 60 + int(mm)


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, reason: str) -> None:
        self.items.append((line, reason))


def _shift(raw: Any, line: int, p: _Problems) -> Shift:
    if not isinstance(raw, dict):
        p.add(line, "a shift is a mapping with hours / weekdays / holidays")
        return ALWAYS
    for k in raw:
        if k not in ("hours", "weekdays", "holidays"):
            p.add(line_of(raw, k), f"unknown shift field {k!r} (hours, weekdays, holidays)")
    start, end = 0, 24 * 60
    if "hours" in raw:
        m = _HOURS_RE.match(str(raw["hours"]).replace(" ", ""))
        if not m:
            p.add(line_of(raw, "hours"), f"hours must be like \"08:00-18:00\", got {raw['hours']!r}")
        else:
            start, end = _parse_minutes(m[1], m[2]), _parse_minutes(m[3], m[4])
            if start > 24 * 60 or end > 24 * 60 or start == end:
                p.add(line_of(raw, "hours"), f"hours {raw['hours']!r} is an empty or impossible span")
    days = frozenset(range(1, 8))
    if "weekdays" in raw:
        wd = raw["weekdays"]
        if not isinstance(wd, list) or not wd or not all(isinstance(d, int) and 1 <= d <= 7 for d in wd):
            p.add(line_of(raw, "weekdays"), "weekdays must be a list of 1 (Monday) .. 7 (Sunday)")
        else:
            days = frozenset(wd)
    hol = raw.get("holidays")
    if hol is not None and hol not in ("only", "skip"):
        p.add(line_of(raw, "holidays"), f"holidays must be `only` or `skip`, got {hol!r}")
        hol = None
    return Shift(start, end, days, hol)


def _person(raw: Any, pid: str | None, line: int, p: _Problems) -> Person | None:
    if not isinstance(raw, dict):
        p.add(line, "a person is a mapping: name, and phone / wecom / dingtalk / email")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        p.add(line, "a person needs a `name`")
        return None
    vals: dict[str, str | None] = {}
    for k, v in raw.items():
        if k in ("name", "person", "shift"):
            continue
        if k not in CHANNEL_FIELDS:
            p.add(line_of(raw, k), f"unknown field {k!r} for {name} (phone, wecom, dingtalk, email)")
            continue
        text = str(v).strip() if v is not None else ""
        if k == "email":
            if not _EMAIL_RE.match(text):
                p.add(line_of(raw, k), f"{name}: {text!r} is not an e-mail address")
                continue
        elif not _MOBILE_RE.match(text):
            p.add(line_of(raw, k), f"{name}: {k} {text!r} is not a phone number")
            continue
        vals[k] = text
    if not vals:
        p.add(line, f"{name} can be reached by no channel (phone, wecom, dingtalk or email)")
    return Person(name=name.strip(), pid=pid, **vals)


KEYS = ("escalate_after_s", "remind_every_s", "holidays", "shifts", "people", "tiers")


def _per_severity(doc: dict[str, Any], key: str, p: _Problems) -> dict[str, float]:
    """`key: {red: 120, orange: 300}`: seconds per severity."""
    out: dict[str, float] = {}
    raw = doc.get(key) or {}
    if not isinstance(raw, dict):
        p.add(line_of(doc, key), f"{key} maps a severity to seconds")
        return out
    for sev, v in raw.items():
        if sev not in SEVERITIES:
            p.add(line_of(raw, sev), f"unknown severity {sev!r} ({', '.join(SEVERITIES)})")
        elif isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            p.add(line_of(raw, sev), f"{key}.{sev} must be seconds > 0, got {v!r}")
        else:
            out[sev] = float(v)
    return out


def parse_roster(path: Path) -> Roster:
    doc = load_yaml(path)
    p = _Problems()
    for k in doc:
        if k not in KEYS:
            p.add(line_of(doc, k), f"unknown key {k!r} ({', '.join(KEYS)})")

    esc, remind = _per_severity(doc, "escalate_after_s", p), _per_severity(doc, "remind_every_s", p)

    holidays: set[dt.date] = set()
    raw_hol = doc.get("holidays") or []
    if not isinstance(raw_hol, list):
        p.add(line_of(doc, "holidays"), "holidays is a list of dates (YYYY-MM-DD)")
    else:
        for i, h in enumerate(raw_hol):
            if isinstance(h, dt.date) and not isinstance(h, dt.datetime):
                holidays.add(h)
                continue
            try:
                holidays.add(dt.date.fromisoformat(str(h)))
            except ValueError:
                p.add(line_of(raw_hol, i), f"{h!r} is not a date (YYYY-MM-DD)")

    shifts: dict[str, Shift] = {}
    raw_shifts = doc.get("shifts") or {}
    if not isinstance(raw_shifts, dict):
        p.add(line_of(doc, "shifts"), "shifts maps a name to {hours, weekdays, holidays}")
    else:
        for name, s in raw_shifts.items():
            shifts[name] = _shift(s, line_of(raw_shifts, name), p)

    people: dict[str, Person] = {}
    raw_people = doc.get("people") or {}
    if not isinstance(raw_people, dict):
        p.add(line_of(doc, "people"), "people maps an id to {name, phone, wecom, dingtalk, email}")
    else:
        for pid, raw in raw_people.items():
            person = _person(raw, pid, line_of(raw_people, pid), p)
            if person is not None:
                people[pid] = person

    tiers: dict[str, list[list[Duty]]] = {}
    raw_tiers = doc.get("tiers")
    if not isinstance(raw_tiers, dict) or not raw_tiers:
        p.add(line_of(doc, "tiers"), "`tiers` must map a community (or '*') to a list of tiers")
        raw_tiers = LineDict()
    from core.contract import COMMUNITIES

    for comm, chain in raw_tiers.items():
        cl = line_of(raw_tiers, comm)
        if comm != "*" and comm not in COMMUNITIES:
            p.add(cl, f"unknown community {comm!r} ({', '.join(COMMUNITIES)} or '*')")
        if not isinstance(chain, list):
            p.add(cl, f"tiers.{comm} must be a list of tiers, each a list of people")
            continue
        out_chain: list[list[Duty]] = []
        for ti, tier in enumerate(chain):
            tl = line_of(chain, ti)
            if not isinstance(tier, list) or not tier:
                p.add(tl, f"tier {ti + 1} of {comm} must be a non-empty list of people")
                continue
            duties: list[Duty] = []
            for di, entry in enumerate(tier):
                el = line_of(tier, di)
                if not isinstance(entry, dict):
                    p.add(el, "a tier entry is {person: ID} or an inline person {name:, phone:, ...}")
                    continue
                if "person" in entry:
                    person = people.get(str(entry["person"]))
                    if person is None:
                        p.add(line_of(entry, "person"), f"no person {entry['person']!r} under people:")
                        continue
                    extra = [k for k in entry if k not in ("person", "shift")]
                    if extra:
                        p.add(el, f"unexpected {', '.join(extra)} next to person: (define them under people:)")
                else:
                    person = _person(entry, None, el, p)
                    if person is None:
                        continue
                shift = ALWAYS
                if "shift" in entry:
                    s = entry["shift"]
                    if isinstance(s, str):
                        if s not in shifts:
                            p.add(line_of(entry, "shift"), f"no shift {s!r} under shifts:")
                        shift = shifts.get(s, ALWAYS)
                    else:
                        shift = _shift(s, line_of(entry, "shift"), p)
                duties.append(Duty(person, shift))
            out_chain.append(duties)
        tiers[str(comm)] = out_chain
    if p.items:
        raise ConfigError(path, p.items)
    return Roster(tiers, esc, frozenset(holidays), source=str(path), remind_every_s=remind)


def load_roster(path: Path | None = None) -> Roster:
    return parse_roster(path or BUNDLED_ROSTER)
