"""Shelving / maintenance windows (ISA-18.2 "shelved"): a device, a compound (a place), a device kind or a
rule is shelved for a set time with a reason (the gas company repairing a main) — once, or recurring
every week on some weekdays between two times of day in Beijing time (`every`, e.g. "mon-fri
09:00-11:00"; a window may run past midnight) until the shelf ends. Whether a shelf is in force at a
moment is decided here only (`in_force`); the engine asks it every tick. A window may also start by a
cron expression in Beijing time and last a set time (`cron(0 9 * * 1-5) 2h`: weekdays from 09:00 for
two hours; croniter reads the expression), kept in the same `every` field. Alerts raised under a shelf are recorded
and listed, with a `shelved` step on their timeline, but not published to on-call tools nor notified;
when the shelf runs out they come back by themselves (an `unshelved` step, published, notified).

Life-safety alarms are never shelved silently: shelving a gas rule (or a rule that can be red), a gas
device, or a device / compound / rule with an open red or gas alert is refused unless a second person
— another existing operator or admin account — approves it (`approved_by`); such a shelf is marked
`life_safety` and shown on the console and the wall while it lasts. A red alert is published and
notified under any shelf (the engine asks `never_silenced`).
The store keeps the shelves (migrations 0007, 0011); the engine reads the live ones every tick, so a shelf
written by the CLI or the dashboard applies within a second without a restart.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter

from alerts.rules import Rule
from alerts.store import Store
from core.contract import KINDS, Alert
from core.severity import RANK, Severity
from core.timebase import beijing, iso

GAS = "gas"
APPROVER_ROLES = ("operator", "admin")  # who may be the second person of a life-safety shelf

SCOPES = ("device", "compound", "rule", "kind")
MAX_S = 7 * 24 * 3600  # a week: longer is not maintenance, it is a rule change
SERIES_S = 90 * 24 * 3600  # a recurring window stands this long unless told otherwise
MAX_SERIES_S = 366 * 24 * 3600  # and at most a year: then someone looks at it again
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
DAY_WORD = ("一", "二", "三", "四", "五", "六", "日")
_EVERY = re.compile(r"^\s*(\S+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_CRON = re.compile(r"^\s*cron\s*\(([^()]*)\)\s*(\S+)\s*$")


class ShelfError(ValueError):
    pass


def parse_duration(text: str, max_s: float = MAX_S) -> float:
    """'90s', '45m', '2h', '1d' or plain seconds."""
    m = _DUR.match(text)
    if not m:
        raise ShelfError(f"bad duration {text!r}: use e.g. 30m, 2h, 1d")
    s = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < s <= max_s:
        raise ShelfError(f"a shelf lasts more than 0 and at most {int(max_s // 86400)} days")
    return s


@dataclass(frozen=True)
class Weekly:
    """A weekly window in Beijing time: on `days` (0 = Monday) from `start` to `end` (minutes of the
    day); `end` <= `start` runs past midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, t: float) -> bool:
        local = beijing(t)
        m, wd = local.hour * 60 + local.minute, local.weekday()
        if self.start < self.end:
            return wd in self.days and self.start <= m < self.end
        return (wd in self.days and m >= self.start) or ((wd - 1) % 7 in self.days and m < self.end)

    def ends(self, t: float) -> float:
        """When the occurrence in force at `t` ends (epoch seconds); `t` must be inside."""
        local = beijing(t).replace(second=0, microsecond=0)
        m = local.hour * 60 + local.minute
        day = local.replace(hour=0, minute=0)
        if self.start >= self.end and m >= self.start:
            day += timedelta(days=1)
        return (day + timedelta(minutes=self.end)).timestamp()

    def text(self) -> str:
        """The canonical form the store keeps: "mon-fri 09:00-11:00"."""
        return f"{_days_text(self.days, DAYS, '-', ',', 'daily')} {_hm(self.start)}-{_hm(self.end or 1440)}"

    def words(self) -> str:
        """For people: "每周一至周五 09:00–11:00", "每天 22:00–次日 02:00"."""
        days = "每天" if len(self.days) == 7 else "每" + _days_text(self.days, tuple(f"周{w}" for w in DAY_WORD),
                                                                   "至", "、", "")
        overnight = "次日 " if 0 < self.end <= self.start else ""
        return f"{days} {_hm(self.start)}–{overnight}{_hm(self.end or 1440)}"


@dataclass(frozen=True)
class Cron:
    """A window that opens whenever the cron expression `expr` fires, read in Beijing time, and stays
    open `duration` seconds."""

    expr: str
    duration: int

    def _last_start(self, t: float) -> float:
        """The latest firing at or before `t` (cron counts whole minutes)."""
        nxt = beijing(t).replace(second=0, microsecond=0) + timedelta(minutes=1)
        return float(croniter(self.expr, nxt).get_prev(datetime).timestamp())

    def contains(self, t: float) -> bool:
        return t < self._last_start(t) + self.duration

    def ends(self, t: float) -> float:
        """When the occurrence in force at `t` ends (epoch seconds); `t` must be inside."""
        return self._last_start(t) + self.duration

    def text(self) -> str:
        """The canonical form the store keeps: "cron(0 9 * * 1-5) 2h"."""
        return f"cron({self.expr}) {_duration_text(self.duration)}"

    def words(self) -> str:
        """For people: "每周一至周五 09:00 起 2 小时"; an expression that has no simple words is shown as
        written: "按定时计划 0 */4 * * * 起 30 分钟"."""
        return f"{_cron_words(self.expr) or '按定时计划 ' + self.expr} 起 {_duration_words(self.duration)}"


def _duration_text(s: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


def _duration_words(s: int) -> str:
    parts = [(s // 86400, "天"), (s % 86400 // 3600, "小时"), (s % 3600 // 60, "分钟"), (s % 60, "秒")]
    return " ".join(f"{n} {w}" for n, w in parts if n)


def _cron_words(expr: str) -> str | None:
    """Chinese words for the usual shapes: fixed times of day on every day, some weekdays, some days of
    the month, or some months; None for anything else (steps over hours, minute ranges ...)."""
    (minutes, hours, doms, months, dows), _ = croniter.expand(expr)
    if "*" in minutes or "*" in hours or len(minutes) * len(hours) > 4:
        return None
    times = "、".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
    week = sorted({(int(d) - 1) % 7 for d in dows}) if "*" not in dows else None  # cron: 0/7 Sunday
    days = ("每" if len(week) < 7 else "") + _days_text(frozenset(week), tuple(f"周{w}" for w in DAY_WORD),
                                                         "至", "、", "每天") if week is not None else ""
    if "*" not in doms:
        month_days = "、".join(str(d) for d in doms) + " 日"
        if days:
            return None  # cron's "either" of a day of the month and a weekday: too easy to misread in words
        days = ("每月 " if "*" in months else "") + month_days
    if "*" not in months:
        days = "每年 " + "、".join(str(m) for m in months) + " 月" + (f" {days}" if days else "")
    return f"{days or '每天'} {times}"


def parse_cron(expr: str, duration: str | float) -> Cron:
    """A cron window: five fields (minute hour day-of-month month weekday) in Beijing time, and how long
    each occurrence lasts ("2h", "30m" or seconds, at most a week)."""
    fields = expr.strip().lower().split()
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
        raise ShelfError(f"bad cron expression {expr!r}: five fields, minute hour day month weekday, "
                         "e.g. \"0 9 * * 1-5\" (Beijing time)")
    secs = parse_duration(duration) if isinstance(duration, str) else float(duration)
    if not 60 <= secs <= MAX_S:
        raise ShelfError("a cron window lasts at least a minute and at most 7 days")
    return Cron(" ".join(fields), int(secs))


def _hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: frozenset[int], names: tuple[str, ...], to: str, sep: str, every: str) -> str:
    if len(days) == 7 and every:
        return every
    runs: list[list[int]] = []
    for d in sorted(days):
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    # a run of three or more days reads as a range (mon-fri, 周一至周五); shorter ones one by one
    return sep.join(sep.join(names[d] for d in r) if len(r) < 3 else f"{names[r[0]]}{to}{names[r[-1]]}"
                    for r in runs)


@functools.lru_cache(maxsize=256)
def parse_every(text: str) -> Weekly | Cron:
    """"mon-fri 09:00-11:00", "sat,sun 22:00-06:00", "daily 01:00-03:00", or a cron window
    "cron(0 9 * * 1-5) 2h" (Beijing time)."""
    c = _CRON.match(text.lower())
    if c:
        return parse_cron(c.group(1), c.group(2))
    m = _EVERY.match(text.lower())
    if not m:
        raise ShelfError(f"bad window {text!r}: use e.g. \"mon-fri 09:00-11:00\" (Beijing time)")
    days: set[int] = set()
    for part in m.group(1).split(","):
        if part in ("daily", "*"):
            days.update(range(7))
            continue
        a, _, b = part.partition("-")
        if a not in DAYS or (b and b not in DAYS):
            raise ShelfError(f"bad weekday {part!r}: use mon tue wed thu fri sat sun, a range mon-fri, or daily")
        i, j = DAYS.index(a), DAYS.index(b or a)
        days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    h1, m1, h2, m2 = (int(x) for x in m.groups()[1:])
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ShelfError(f"bad time of day in {text!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ShelfError("a window starts and ends at different times")
    return Weekly(frozenset(days), start, end % 1440 if end == 1440 else end)


def in_force(shelf: dict[str, Any], now: float) -> bool:
    """Is this shelf muting at `now`: not ended, not run out, and (recurring) inside its window."""
    if shelf.get("ended_at") or now >= shelf["until"]:
        return False
    return not shelf.get("every") or parse_every(shelf["every"]).contains(now)


def ends_at(shelf: dict[str, Any], now: float) -> float:
    """When the muting in force at `now` ends: the occurrence's end, or the shelf's."""
    every = shelf.get("every")
    return min(shelf["until"], parse_every(every).ends(now)) if every else shelf["until"]


def step_data(shelf: dict[str, Any], now: float) -> dict[str, Any]:
    """What a `shelved` step records of the shelf it fell under."""
    data: dict[str, Any] = {"shelf_id": shelf["shelf_id"], "until": iso(ends_at(shelf, now))}
    if shelf.get("every"):
        data["every"] = shelf["every"]
    return data


def never_silenced(severity: str) -> bool:
    """A red alert is published and notified under any shelf."""
    return severity == Severity.RED


def shelf_for(shelves: Iterable[dict[str, Any]], alert: Alert) -> dict[str, Any] | None:
    """The shelf an alert falls under (its rule, its device, its compound or its kind), if any; the
    caller passes the shelves in force (`in_force`)."""
    for s in shelves:
        if ((s["scope"] == "rule" and s["target"] == alert.rule)
                or (s["scope"] == "kind" and alert.kind and s["target"] == alert.kind)
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
    if scope == "kind" and target == GAS:
        return "燃气类设备的告警是生命安全告警 (gas devices)"
    col = {"device": "device_id", "compound": "compound_id", "rule": "rule", "kind": "kind"}[scope]
    for a in store.list(state="active,acknowledged", limit=5000):
        if getattr(a, col) == target and life_safety(a.severity, a.kind):
            return f"{target} 有未解除的红色/燃气告警 {a.alert_id} ({a.rule}, {a.severity}): {a.message}"
    return None


def shelve(store: Store, scope: str, target: str, duration_s: float, reason: str, by: str,
           now: float | None = None, *, approved_by: str | None = None,
           approver_role: Callable[[str], str | None] | None = None, rules: Iterable[Rule] = (),
           device_kind: Callable[[str], str | None] | None = None, every: str | None = None) -> dict[str, Any]:
    """Shelve a device, compound, device kind or rule for `duration_s` — all that time, or with `every`
    only inside that weekly window; a life-safety one only with a second person's approval:
    `approved_by` must be an account other than `by` whose role (`approver_role`) is operator or admin."""
    if scope not in SCOPES:
        raise ShelfError(f"scope must be one of {SCOPES}")
    if not target.strip() or not reason.strip() or not by.strip():
        raise ShelfError("a shelf needs a target, a reason and who shelved it")
    if scope == "kind" and target.strip() not in KINDS:
        raise ShelfError(f"a device kind is one of {KINDS}")
    every = parse_every(every).text() if every and every.strip() else None
    longest = MAX_SERIES_S if every else MAX_S
    if not 0 < duration_s <= longest:
        raise ShelfError(f"a {'recurring window' if every else 'shelf'} lasts more than 0 and at most "
                         f"{longest // 86400} days")
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
                            approved_by=approver, life_safety=why is not None, every=every)
    return next(s for s in store.shelves() if s["shelf_id"] == shelf_id)
