"""Patrol plans (alerts/patrols.py): the file's errors, rounds in Beijing time, check-ins and hazards."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alerts.configfile import ConfigError
from alerts.dispatch import Refused
from alerts.patrols import (
    BUNDLED_PLANS,
    CheckIn,
    Plans,
    advance_hazard,
    check_in,
    distance_m,
    hazard_overdue,
    parse_plans,
    rounds_in,
    status,
)
from alerts.store import open_store
from core.timebase import BEIJING, beijing, epoch

GOOD = """plans:
  - id: p1
    name: 艳湖路燃气管巡检
    community: yanhu
    segment: 艳湖路中压燃气管一段
    who: {team: gas}
    every: 1d
    start: 2026-12-01
    checkpoints:
      - {name: 北口阀井, lon: 110.7905, lat: 32.6421, tolerance_m: 30}
      - {name: 东门调压箱, lon: 110.7918, lat: 32.6415, tolerance_m: 30}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "patrols.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def plan_of(tmp_path: Path, text: str = GOOD) -> Plans:
    return parse_plans(write(tmp_path, text))


def at(day: int, hour: float) -> float:
    """Epoch seconds of a Beijing wall time in December 2026."""
    return (datetime(2026, 12, day, tzinfo=BEIJING) + timedelta(hours=hour)).timestamp()


def test_the_bundled_sample_covers_the_four_communities() -> None:
    plans = parse_plans(BUNDLED_PLANS)
    assert {p.community for p in plans} == {"yanling", "gongyixincun", "lanshanjun", "yanhu"}
    assert all(p.checkpoints and p.who_name for p in plans)


@pytest.mark.parametrize(("change", "line", "words"), [
    (("who: {team: gas}", "who: {team: nobody}"), 6, "no team 'nobody'"),
    (("who: {team: gas}", "who: {person: ghost}"), 6, "no person 'ghost' in the on-call roster"),
    (("every: 1d", "every: often"), 7, "every is a number of hours or days"),
    (("start: 2026-12-01", "start: soon"), 8, "start is the day the plan takes effect"),
    (("community: yanhu", "community: atlantis"), 4, "community must be one of"),
    (("lon: 110.7905, lat: 32.6421", "lon: 32.6421, lat: 110.7905"), 10, "no WGS-84 lon/lat in China"),
    (("tolerance_m: 30}\n      - {name: 东门", "tolerance_m: 3000}\n      - {name: 东门"), 10, "tolerance_m must be"),
    (("    segment: 艳湖路中压燃气管一段\n", ""), 2, "either `compound:`"),
])
def test_a_bad_plan_file_is_refused_with_file_line_and_reason(tmp_path: Path, change: tuple[str, str], line: int,
                                                               words: str) -> None:
    assert change[0] in GOOD
    with pytest.raises(ConfigError) as exc:
        plan_of(tmp_path, GOOD.replace(change[0], change[1], 1))
    text = str(exc.value)
    assert f"patrols.yaml:{line}:" in text and words in text, text


def test_rounds_are_cut_at_beijing_midnight_and_misses_count_in_a_row(tmp_path: Path) -> None:
    plan = plan_of(tmp_path).get("p1")
    assert plan is not None
    # 2026-12-01 00:00 Beijing is 2026-11-30 16:00 UTC.
    assert beijing(plan.anchor).hour == 0 and datetime.fromtimestamp(plan.anchor).astimezone(BEIJING).day == 1
    both = [("北口阀井", at(1, 9)), ("东门调压箱", at(1, 9.5))]
    s = status(plan, both, at(1, 23.9))
    assert s.complete and not s.overdue and s.round_end == at(2, 0)
    s = status(plan, both, at(2, 0.01))  # the new round has begun: due by the next Beijing midnight
    assert not s.overdue and s.todo == list(plan.checkpoints) and s.round_end == at(3, 0)
    assert status(plan, both, at(3, 0.01)).missed == 1  # the 2nd ended undone
    assert status(plan, both, at(4, 0.01)).missed == 2
    one = [("北口阀井", at(3, 10))]  # one checkpoint of two: the round is not done
    assert status(plan, both + one, at(4, 0.01)).missed == 2
    # Done in the round in progress: no longer overdue, whatever was missed before.
    caught_up = [*both, ("北口阀井", at(4, 8)), ("东门调压箱", at(4, 8.2))]
    assert status(plan, caught_up, at(4, 9)).missed == 0
    # Before the start nothing is due.
    assert not status(plan, [], at(1, 0) - 60).started
    # A check-in at 23:59 Beijing (15:59 UTC) belongs to that Beijing day, not the UTC one.
    late = [("北口阀井", at(1, 23.99)), ("东门调压箱", at(1, 23.99))]
    assert status(plan, late, at(2, 12)).missed == 0 and status(plan, late, at(3, 0.01)).missed == 1


def test_report_rounds_in_a_period(tmp_path: Path) -> None:
    plan = plan_of(tmp_path).get("p1")
    assert plan is not None
    done = [("北口阀井", at(1, 9)), ("东门调压箱", at(1, 9)), ("北口阀井", at(3, 9)), ("东门调压箱", at(3, 9))]
    due, ok = rounds_in(plan, at(1, 0), at(5, 0.5), done)
    assert (due, ok) == (4, 2)  # the rounds of the 1st..4th ended; the 1st and 3rd done


def test_a_check_in_too_far_from_the_checkpoint_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    plans = plan_of(tmp_path)
    store = open_store(tmp_path / "a.sqlite")
    far = CheckIn("p1", "北口阀井", 110.7905 + 0.001, 32.6421)  # ~94 m east
    assert 80 < distance_m(110.7905, 32.6421, far.lon, far.lat) < 110
    with pytest.raises(Refused) as exc:
        check_in(store, plans, far, "王师傅", at(2, 9), tmp_path, 200_000)
    assert exc.value.status == 409 and "超出允许的 30 米" in exc.value.message and "94 米" in exc.value.message
    assert store.checkins("2026-01-01T00:00:00Z") == []
    near = CheckIn("p1", "北口阀井", 110.7905 + 0.0001, 32.6421)  # ~9 m
    done = check_in(store, plans, near, "王师傅", at(2, 9), tmp_path, 200_000)
    rows = store.checkins("2026-01-01T00:00:00Z")
    assert [r["checkin_id"] for r in rows] == [done["checkin"]["checkin_id"]] and rows[0]["distance_m"] < 15
    assert done["hazard"] is None
    with pytest.raises(Refused) as exc:
        check_in(store, plans, CheckIn("p1", "没有这个点", 110.79, 32.64), "王师傅", at(2, 9), tmp_path, 1)
    assert exc.value.status == 404


def png() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_a_finding_opens_a_hazard_tracked_to_closure_and_overdue_past_its_deadline(tmp_path: Path) -> None:
    plans = plan_of(tmp_path)
    store = open_store(tmp_path / "a.sqlite")
    now = at(2, 9)
    done = check_in(store, plans, CheckIn("p1", "东门调压箱", 110.7918, 32.6415, findings="调压箱锈蚀, 箱门无锁",
                                          deadline_days=3, photos=[png()]), "王师傅", now, tmp_path, 200_000)
    h = done["hazard"]
    assert h is not None and h["state"] == "open" and epoch(h["deadline"]) == pytest.approx(now + 3 * 86400, abs=0.01)
    assert (tmp_path / "patrols" / "photos" / "checkins" / done["checkin"]["checkin_id"] / "1.png").stat().st_mode \
        & 0o777 == 0o600
    hid = h["hazard_id"]
    assert not hazard_overdue(store.hazard(hid), now + 2 * 86400)
    assert hazard_overdue(store.hazard(hid), now + 3 * 86400 + 1)
    with pytest.raises(Refused):  # rectified needs a photo of the work done
        advance_hazard(store, hid, "rectified", "刘经理", "已更换", [], now, tmp_path, 200_000)
    r = advance_hazard(store, hid, "rectified", "刘经理", "已除锈加锁", [png()], now + 86400, tmp_path, 200_000)
    assert r["state"] == "rectified" and [p["stage"] for p in r["photos"]] == ["found", "rectified"]
    assert not hazard_overdue(r, now + 10 * 86400)  # rectified in time: not overdue any more
    with pytest.raises(Refused) as exc:
        advance_hazard(store, hid, "rectified", "刘经理", "", [png()], now, tmp_path, 200_000)
    assert exc.value.status == 409
    c = advance_hazard(store, hid, "closed", "街道安监员", "复查合格", None, now + 2 * 86400, tmp_path, 200_000)
    assert c["state"] == "closed" and c["closed_by"] == "街道安监员"
    assert [x["hazard_id"] for x in store.hazards(["closed"])] == [hid] and store.hazards(["open"]) == []


def test_patrols_check_names_file_line_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from alerts.cli import run_patrols_check
    from core.settings import Settings

    good = write(tmp_path, GOOD)
    assert run_patrols_check(argparse.Namespace(file=str(good)), Settings()) == 0
    assert "ok, 1 plans, 2 checkpoints" in capsys.readouterr().out
    good.write_text(GOOD.replace("every: 1d", "every: sometimes"), encoding="utf-8")
    assert run_patrols_check(argparse.Namespace(file=str(good)), Settings()) == 1
    assert f"{good}:7: plan p1: every is a number of hours or days" in capsys.readouterr().err


def test_a_restarted_service_reads_the_rounds_done_from_the_store(tmp_path: Path) -> None:
    """The patrol book the alerts service fills at start: plans, and the check-ins the store holds."""
    from alerts.patrols import PatrolBook

    plans = plan_of(tmp_path)
    store = open_store(tmp_path / "a.sqlite")
    for point, lon, lat in (("北口阀井", 110.7905, 32.6421), ("东门调压箱", 110.7918, 32.6415)):
        check_in(store, plans, CheckIn("p1", point, lon, lat), "王师傅", at(2, 9), tmp_path, 200_000)
    book = PatrolBook()
    book.set_plans(plans)
    now = at(3, 8)  # the 2nd was done; the 1st was not
    book.load(store.checkins(PatrolBook.since(plans, now)))
    plan = plans.get("p1")
    assert plan is not None
    assert book.status(plan, now).missed == 0 and book.status(plan, at(4, 0.1)).missed == 1
    empty = PatrolBook()
    empty.set_plans(plans)
    assert empty.status(plan, now).missed == 2  # without the store's check-ins both rounds count as missed
