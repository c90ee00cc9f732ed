"""The period report's patrols and hazards per community: rounds due and done, hazards open, closed
and overdue (alerts/report.py over alerts/patrols.py)."""

from __future__ import annotations

from pathlib import Path

from alerts.patrols import CheckIn, advance_hazard, check_in
from alerts.report import ALL, Period, build_report, to_csv
from alerts.store import open_store
from tests.alerts.test_patrols import at, plan_of, png


def test_patrol_completion_and_hazards_per_community(tmp_path: Path) -> None:
    plans = plan_of(tmp_path)  # one daily plan in 艳湖 with two checkpoints, from 2026-12-01
    store = open_store(tmp_path / "a.sqlite")
    north, east = (110.7905, 32.6421), (110.7918, 32.6415)
    for day in (1, 3):  # done on the 1st and the 3rd; the 2nd only half; the 4th not at all
        check_in(store, plans, CheckIn("p1", "北口阀井", *north), "王师傅", at(day, 9), tmp_path, 200_000)
        check_in(store, plans, CheckIn("p1", "东门调压箱", *east), "王师傅", at(day, 10), tmp_path, 200_000)
    check_in(store, plans, CheckIn("p1", "北口阀井", *north), "王师傅", at(2, 9), tmp_path, 200_000)
    late = check_in(store, plans, CheckIn("p1", "北口阀井", *north, findings="阀井盖板破损", deadline_days=1),
                    "王师傅", at(2, 9), tmp_path, 200_000)["hazard"]
    closed = check_in(store, plans, CheckIn("p1", "东门调压箱", *east, findings="调压箱锈蚀", deadline_days=5),
                      "王师傅", at(3, 10), tmp_path, 200_000)["hazard"]
    check_in(store, plans, CheckIn("p1", "东门调压箱", *east, findings="箱门无锁", deadline_days=30),
             "王师傅", at(3, 11), tmp_path, 200_000)
    advance_hazard(store, closed["hazard_id"], "rectified", "刘经理", "", [png()], at(4, 9), tmp_path, 200_000)
    advance_hazard(store, closed["hazard_id"], "closed", "安监员", "复查合格", None, at(4, 12), tmp_path, 200_000)
    assert late is not None
    rep = build_report(store, Period.days("2026-12-01", "2026-12-04"), now=at(10, 0), plans=plans)
    yh, every = rep.sections["yanhu"], rep.sections[ALL]
    assert (yh.patrol_rounds, yh.patrol_done) == (4, 2) and yh.patrol_completion == 0.5
    assert (yh.hazards_open, yh.hazards_closed, yh.hazards_overdue) == (2, 1, 1)
    assert (every.patrol_rounds, every.hazards_open, every.hazards_overdue) == (4, 2, 1)
    assert rep.sections["yanling"].patrol_rounds == 0 and rep.sections["yanling"].hazards_open == 0
    # Before the close and the deadline: the period ending on the 2nd sees one round due, one open hazard.
    early = build_report(store, Period.days("2026-12-01", "2026-12-02"), now=at(10, 0), plans=plans)
    e = early.sections["yanhu"]
    assert (e.patrol_rounds, e.patrol_done, e.hazards_open, e.hazards_closed) == (2, 1, 1, 0)
    assert e.hazards_overdue == 0  # its deadline (the 3rd, 09:00) is after that period's end
    csv = to_csv(rep)
    assert "patrol_rounds,yanhu,done,巡检已完成轮次,2" in csv and "hazards,yanhu,overdue,超期未整改,1" in csv
