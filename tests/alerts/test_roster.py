"""The on-call roster: shifts (hours, weekdays, past midnight), holidays, channels per person, and
files with errors refused with file, line and reason while the running roster stays."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerts.configfile import ConfigError, Watched
from alerts.roster import BUNDLED_ROSTER, load_roster, parse_roster
from core.timebase import BEIJING

ROSTER = """\
escalate_after_s: {red: 120, orange: 300}
holidays: [2026-10-01]
shifts:
  day: {hours: "08:00-18:00", weekdays: [1, 2, 3, 4, 5], holidays: skip}
  night: {hours: "18:00-08:00"}
  holiday: {hours: "08:00-18:00", holidays: only}
people:
  zhang: {name: 张三, phone: "13800000001", wecom: "13800000001"}
  li: {name: 李四, phone: "13800000002", dingtalk: "13800000002"}
  wang: {name: 王五, email: wang@example.cn}
tiers:
  yanling:
    - [{person: zhang, shift: day}, {person: li, shift: night}, {person: wang, shift: holiday}]
  "*":
    - [{person: wang}]
"""


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=BEIJING).timestamp()


@pytest.fixture
def roster_file(tmp_path: Path) -> Path:
    p = tmp_path / "oncall.yaml"
    p.write_text(ROSTER, encoding="utf-8")
    return p


def names(r, when: float) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.name for p in r.contacts("yanling", 1, when)]


def test_who_is_on_shift(roster_file: Path) -> None:
    r = parse_roster(roster_file)
    assert names(r, at(2026, 11, 25, 10)) == ["张三"]  # Wednesday, day
    assert names(r, at(2026, 11, 25, 22)) == ["李四"]  # Wednesday night
    assert names(r, at(2026, 11, 28, 3)) == ["李四"]  # Saturday 03:00 belongs to Friday's night shift
    assert names(r, at(2026, 11, 28, 10)) == ["张三", "李四", "王五"]  # Saturday daytime: nobody on shift -> all
    assert names(r, at(2026, 10, 1, 10)) == ["王五"]  # a Thursday, but a holiday: the holiday shift
    assert r.contacts("yanling", 2)[0].email == "wang@example.cn"  # then the '*' tiers
    assert r.max_tier("yanling") == 2 and r.max_tier("yanhu") == 1


def test_bundled_roster_reaches_everyone_by_some_channel() -> None:
    r = load_roster()
    assert r.escalate_after_s == {"red": 120.0, "orange": 300.0, "yellow": 900.0}
    for p in r.people():
        assert p.phone or p.wecom or p.dingtalk or p.email
    assert [p.name for p in r.contacts("yanling", 1)] == ["岩岭社区值班员"]
    assert [p.name for p in r.contacts("yanling", 3, at(2026, 11, 25, 10))] == ["街道带班领导"]
    assert [p.name for p in r.contacts("yanling", 3, at(2026, 11, 25, 23))] == ["街道夜间带班领导"]


@pytest.mark.parametrize("old,new,line,reason", [
    ('  night: {hours: "18:00-08:00"}', '  night: {hours: "18h-8h"}', 5, "hours must be like"),
    ("    - [{person: wang}]", "    - [{person: wangwu}]", 15, "no person 'wangwu'"),
    ('  li: {name: 李四, phone: "13800000002", dingtalk: "13800000002"}',
     '  li: {name: 李四, phone: "call me"}', 9, "is not a phone number"),
    ("  wang: {name: 王五, email: wang@example.cn}", "  wang: {name: 王五, email: wang}", 10, "not an e-mail"),
    ("holidays: [2026-10-01]", "holidays: [2026-13-01]", 2, "is not a date"),
    ("  yanling:", "  yanlin:", 12, "unknown community 'yanlin'"),
    ("escalate_after_s: {red: 120, orange: 300}", "escalate_after_s: {red: -5, orange: 300}", 1, "seconds > 0"),
    ("  day: {hours", "  day: {hours: [", 4, "not valid YAML"),
    ("  wang: {name: 王五, email: wang@example.cn}", "  wang: {name: 王五}", 10, "reached by no channel"),
])
def test_errors_are_refused_with_file_line_and_reason(tmp_path: Path, old: str, new: str, line: int,
                                                       reason: str) -> None:
    assert old in ROSTER
    p = tmp_path / "bad.yaml"
    p.write_text(ROSTER.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        parse_roster(p)
    assert f"{p}:{line}: " in str(exc.value) and reason in str(exc.value), str(exc.value)


def test_a_bad_edit_keeps_the_running_roster(roster_file: Path) -> None:
    w = Watched(roster_file, parse_roster, poll_s=0)
    good = w.current()
    roster_file.write_text(ROSTER.replace("person: wang}", "person: nobody}"), encoding="utf-8")
    os.utime(roster_file, ns=(time.time_ns() + 10**9,) * 2)
    assert w.current() is good and w.error is not None and ":15: no person 'nobody'" in w.error
    roster_file.write_text(ROSTER.replace("王五", "王五五"), encoding="utf-8")
    os.utime(roster_file, ns=(time.time_ns() + 2 * 10**9,) * 2)
    assert w.current() is not good and w.error is None
    assert w.current().contacts("yanling", 2)[0].name == "王五五"


def test_notify_check_names_file_line_reason(roster_file: Path, tmp_path: Path) -> None:
    chans = tmp_path / "channels.yaml"
    chans.write_text("channels:\n  - id: w\n    kind: wechat\n    url: http://x/\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    root = Path(__file__).resolve().parents[2]
    ok = subprocess.run([sys.executable, "-m", "smartcommunity.cli", "notify", "check", "--roster", str(roster_file)],
                        capture_output=True, text=True, env=env, cwd=root)
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "smartcommunity.cli", "notify", "check", "--roster",
                          str(BUNDLED_ROSTER), "--channels", str(chans)], capture_output=True, text=True, env=env,
                         cwd=root)
    assert bad.returncode == 1 and f"{chans}:3: unknown kind 'wechat'" in bad.stderr
