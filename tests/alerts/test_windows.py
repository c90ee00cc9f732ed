"""Maintenance windows: a weekly schedule in Beijing time (inside / outside, past midnight, whatever the
host's zone), a device-kind shelf muting inside its window and telling outside it, the store upgrade,
and `alerts shelve --every` against a running alert service."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerts.migrations import migrate
from alerts.shelving import SERIES_S, ShelfError, ends_at, in_force, parse_cron, parse_every, shelve
from alerts.store import AlertStore, store_path
from alerts.timeline import Event as Step
from core.contract import Device
from core.timebase import BEIJING, BEIJING_OFFSET_S, TZ_NAME, iso
from tests.alerts.test_engine import WATER, tel
from tests.alerts.test_shelving import notified, rig
from tests.conftest import RunningAlerts, make_settings

MONDAY = datetime(2026, 12, 7, tzinfo=BEIJING)  # a Monday in Beijing
WATER2 = Device("W-2", "water", "yanhu", "YH-01", 30, 110.79, 32.65)


def at(day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of a Beijing day of the week (0 = Monday) and time."""
    return (MONDAY + timedelta(days=day, hours=hour, minutes=minute)).timestamp()


@pytest.fixture
def host_zone(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run with the host clock in another zone: windows are Beijing time all the same."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York", TZ_NAME], indirect=True)
def test_weekday_window_inside_and_outside_in_beijing_time(host_zone: None) -> None:
    w = parse_every("mon-fri 09:00-11:00")
    assert w.contains(at(0, 9)) and w.contains(at(4, 10, 59))
    assert not w.contains(at(0, 8, 59)) and not w.contains(at(0, 11)) and not w.contains(at(5, 10))
    assert w.ends(at(2, 9, 30)) == at(2, 11)
    # 09:30 Beijing is 01:30 UTC: a window read in the host's or UTC's hours would miss it.
    assert datetime.fromtimestamp(at(0, 9, 30)).hour != 9 or time.localtime().tm_gmtoff == BEIJING_OFFSET_S
    assert w.text() == "mon-fri 09:00-11:00" and w.words() == "每周一至周五 09:00–11:00"


def test_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    w = parse_every("fri,sat 22:00-06:00")
    assert w.contains(at(4, 23)) and w.contains(at(5, 5, 59)) and w.contains(at(6, 3))  # Fri night, Sat night
    assert not w.contains(at(4, 5)) and not w.contains(at(6, 6)) and not w.contains(at(5, 12))
    assert not w.contains(at(0, 1))  # Sunday night is not in it
    assert w.ends(at(4, 23)) == at(5, 6) and w.ends(at(5, 2)) == at(5, 6)
    assert w.words() == "每周五、周六 22:00–次日 06:00" and w.text() == "fri,sat 22:00-06:00"
    assert parse_every("DAILY 01:00-03:00").words() == "每天 01:00–03:00"
    assert parse_every("sat-mon 00:00-24:00").text() == "mon,sat,sun 00:00-24:00"
    sunday = parse_every("sun 00:00-24:00")
    assert sunday.contains(at(6, 23, 59)) and not sunday.contains(at(7, 0)) and not sunday.contains(at(5, 23))


@pytest.mark.parametrize("bad", ["weekdays 9-11", "mon-fri 09:00", "mon-xyz 09:00-11:00", "mon 25:00-26:00",
                                 "mon 09:00-09:00", ""])
def test_bad_windows_are_refused(bad: str) -> None:
    with pytest.raises(ShelfError):
        parse_every(bad)


def test_a_recurring_shelf_is_in_force_only_inside_its_window(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.sqlite")
    s = shelve(store, "compound", "YH-01", 14 * 86400, "每周例行检修", "李四", now=at(0, 8),
               every="Mon-Fri 09:00-11:00")
    assert s["every"] == "mon-fri 09:00-11:00" and s["scope"] == "compound"
    assert [in_force(s, at(d, h)) for d, h in ((0, 8), (0, 9), (0, 11), (5, 10), (7, 10), (14, 10))] == [
        False, True, False, False, True, False]  # the last: the series has run out
    assert ends_at(s, at(0, 10)) == at(0, 11)
    with pytest.raises(ShelfError):  # a device kind is one of the contract's kinds
        shelve(store, "kind", "steam", 3600, "r", "b", now=at(0, 8))
    with pytest.raises(ShelfError):  # a recurring window at most a year
        shelve(store, "kind", "water", 400 * 86400, "r", "b", now=at(0, 8), every="daily 01:00-02:00")
    with pytest.raises(ShelfError, match="second person"):  # gas is life-safety, window or not
        shelve(store, "kind", "gas", SERIES_S, "燃气管网例行维护", "李四", now=at(0, 8), every="mon 09:00-10:00")
    store.close()


def test_engine_mutes_a_water_alert_inside_the_window_and_tells_outside(tmp_path: Path) -> None:
    engine, clock, published, store, outbox = rig(tmp_path)
    clock.t = at(0, 9, 30)
    shelf = shelve(store, "kind", "water", SERIES_S, "供水公司每周检修", "值班长王", now=clock.t,
                   every="mon-fri 09:00-11:00")
    engine.tick()
    engine.handle(tel(WATER, clock, leak=True))
    leaks = [a for a in store.list() if a.rule == "water_leak"]
    assert len(leaks) == 1 and leaks[0].state == "active"  # recorded, listed
    assert not [a for a in published if a.rule == "water_leak"] and notified(outbox) == []
    step = store.timeline(leaks[0].alert_id)[-1]
    assert step.event == Step.SHELVED and step.note == "供水公司每周检修"
    assert step.data == {"shelf_id": shelf["shelf_id"], "until": iso(at(0, 11)), "every": "mon-fri 09:00-11:00"}
    clock.t = at(0, 11, 0) + 1  # the window closes: the open leak is told
    engine.handle(tel(WATER, clock, leak=True))
    engine.tick()
    assert [a.alert_id for a in published if a.rule == "water_leak"] == [leaks[0].alert_id]
    assert store.timeline(leaks[0].alert_id)[-1].event == Step.UNSHELVED
    assert leaks[0].alert_id in [n["alert_id"] for n in notified(outbox)]
    clock.t = at(0, 12)  # outside the window a new leak is published and notified at once
    engine.handle(tel(WATER2, clock, leak=True))
    second = [a for a in published if a.rule == "water_leak" and a.device_id == "W-2"]
    assert len(second) == 1 and second[0].alert_id in [n["alert_id"] for n in notified(outbox)]
    assert Step.SHELVED not in [s.event for s in store.timeline(second[0].alert_id)]
    clock.t = at(1, 9, 0) + 1  # Tuesday's window: the still-open leak is muted again, and says so
    engine.handle(tel(WATER2, clock, leak=True))
    engine.tick()
    assert store.timeline(second[0].alert_id)[-1].event == Step.SHELVED
    store.close()


def test_store_from_before_windows_keeps_its_shelves(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, upto=10) == 10
    db.execute("INSERT INTO shelves(scope, target, reason, by, created_at, until, until_iso, life_safety)"
               " VALUES ('device', 'P-1', '检修', '张三', 'x', ?, 'y', 0)", (at(0, 12),))
    db.close()
    store = AlertStore(path)
    old = store.shelves(live_at=at(0, 8))
    assert [(s["scope"], s["target"], s["every"]) for s in old] == [("device", "P-1", None)]
    assert in_force(old[0], at(0, 8)) and not in_force(old[0], at(0, 12))
    new = shelve(store, "kind", "power", 3600, "r", "b", now=at(0, 8))
    assert new["shelf_id"] > old[0]["shelf_id"]
    store.close()


def test_cli_sets_and_lists_a_weekly_window(tmp_path: Path) -> None:
    with RunningAlerts(make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9"), broker=False):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        env["SC_DATA_DIR"] = str(tmp_path / "var")

        def run(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "smartcommunity", "alerts", *a], env=env,
                                  capture_output=True, text=True, timeout=60)

        r = run("shelve", "--kind", "water", "--every", "mon-fri 09:00-11:00", "--reason", "供水检修", "--by", "李四")
        assert r.returncode == 0 and "每周一至周五 09:00–11:00" in r.stdout, r.stderr
        r = run("shelve", "--compound", "YH-01", "--every", "sat 22:00-02:00", "--for", "30d", "--reason", "夜间施工",
                "--by", "李四")
        assert r.returncode == 0, r.stderr
        rows = json.loads(run("shelves", "--json").stdout)
        assert [(x["scope"], x["target"], x["every"]) for x in rows] == [
            ("compound", "YH-01", "sat 22:00-02:00"), ("kind", "water", "mon-fri 09:00-11:00")]
        assert rows[0]["until"] - rows[1]["until"] < 30 * 86400 - 3600  # 30 days, not the default 90
        listed = run("shelves").stdout
        assert "每周一至周五 09:00–11:00" in listed and "每周六 22:00–次日 02:00" in listed
        assert run("shelve", "--kind", "water", "--every", "weekdays", "--reason", "r", "--by", "b").returncode == 2
        # neither --for nor --every
        assert run("shelve", "--kind", "water", "--reason", "r", "--by", "b").returncode == 2
        r = run("shelve", "--kind", "gas", "--every", "mon 09:00-10:00", "--reason", "r", "--by", "李四")
        assert r.returncode == 2 and "second person" in r.stderr  # gas: a second person, window or not
    store = AlertStore(store_path(tmp_path / "var"))
    assert len(store.shelves()) == 2
    store.close()


@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York", TZ_NAME], indirect=True)
def test_cron_window_in_force_at_given_instants_in_beijing_time(host_zone: None) -> None:
    w = parse_every("cron(0 9 * * 1-5) 2h")  # weekdays from 09:00 Beijing, two hours
    assert w == parse_cron("0  9 * * 1-5", "2h") and w.text() == "cron(0 9 * * 1-5) 2h"
    assert [w.contains(at(d, h, m)) for d, h, m in ((0, 9, 0), (0, 10, 59), (0, 11, 0), (0, 8, 59), (4, 9, 30),
                                                    (5, 9, 30), (6, 10, 0), (7, 9, 0))] == [
        True, True, False, False, True, False, False, True]
    assert w.ends(at(2, 9, 45)) == at(2, 11) and w.words() == "每周一至周五 09:00 起 2 小时"
    night = parse_every("cron(30 23 * * 6) 8h")  # Saturday 23:30 past midnight into Sunday
    assert night.contains(at(5, 23, 30)) and night.contains(at(6, 7, 29)) and not night.contains(at(6, 7, 30))
    assert not night.contains(at(5, 23, 29)) and night.ends(at(6, 3)) == at(6, 7, 30)
    assert parse_every("cron(0 8 1,15 * *) 1d").words() == "每月 1、15 日 08:00 起 1 天"
    assert parse_every("cron(0 */4 * * *) 30m").words() == "按定时计划 0 */4 * * * 起 30 分钟"
    s = {"until": at(14, 0), "every": w.text(), "ended_at": None}
    assert in_force(s, at(1, 10)) and not in_force(s, at(1, 12)) and not in_force(s, at(14, 9, 30))
    assert ends_at(s, at(1, 10)) == at(1, 11)


@pytest.mark.parametrize("expr,duration", [("0 9 * *", "2h"), ("61 9 * * *", "2h"), ("0 9 * * 1-5", "8d"),
                                           ("0 9 * * 1-5", "30s"), ("0 0 9 * * 1-5", "1h"), ("every day", "1h")])
def test_bad_cron_windows_are_refused(expr: str, duration: str) -> None:
    with pytest.raises(ShelfError):
        parse_cron(expr, duration)


def test_cli_sets_and_lists_a_cron_window(tmp_path: Path) -> None:
    with RunningAlerts(make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9"), broker=False) as svc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        env["SC_DATA_DIR"] = str(tmp_path / "var")

        def run(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "smartcommunity", "alerts", *a], env=env,
                                  capture_output=True, text=True, timeout=60)

        r = run("shelve", "--kind", "water", "--cron", "0 9 * * 1-5", "--duration", "2h", "--for", "30d",
                "--reason", "供水检修", "--by", "李四")
        assert r.returncode == 0 and "每周一至周五 09:00 起 2 小时" in r.stdout, r.stderr
        live = svc.store.shelves(live_at=time.time())
        assert [(x["scope"], x["target"], x["every"]) for x in live] == [("kind", "water", "cron(0 9 * * 1-5) 2h")]
        assert 30 * 86400 - 120 < live[0]["until"] - time.time() <= 30 * 86400
        assert "每周一至周五 09:00 起 2 小时" in run("shelves").stdout
        assert run("shelve", "--kind", "water", "--cron", "0 9 * * 1-5", "--reason", "r", "--by", "b").returncode == 2
        assert run("shelve", "--kind", "water", "--cron", "0 9 * *", "--duration", "2h", "--reason", "r",
                   "--by", "b").returncode == 2
        r = run("shelve", "--kind", "gas", "--cron", "0 9 * * 1", "--duration", "1h", "--reason", "r", "--by", "李四")
        assert r.returncode == 2 and "second person" in r.stderr  # gas: a second person, cron or not
        assert len(svc.store.shelves()) == 1
