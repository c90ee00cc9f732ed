"""The patrol trigger through the engine: a missed round raises a blue alert, a second miss in a row
makes it yellow (the same alert), and the round done resolves it."""

from __future__ import annotations

from pathlib import Path

from alerts.patrols import PatrolBook, parse_plans
from core.contract import Device
from tests.alerts.test_patrols import GOOD, at, write
from tests.alerts.triggers.conftest import Rig

REGISTRY = {"G1": Device("G1", "gas", "yanhu", "YH-01", 60, 110.79, 32.64)}


def test_blue_then_yellow_on_a_second_miss_and_resolved_by_the_check_ins(rig: Rig, tmp_path: Path) -> None:
    book = rig.engine.memory["patrol"]
    assert isinstance(book, PatrolBook)
    book.set_plans(parse_plans(write(tmp_path, GOOD)))
    rig.clock.t = at(1, 20)  # the first round is in progress: nothing is due yet
    rig.engine.check_silence(REGISTRY)
    assert not rig.of("patrol_missed")
    rig.clock.t = at(2, 0.05)  # the 1st (Beijing) ended with no check-in
    rig.engine.check_silence(REGISTRY)
    first = rig.of("patrol_missed")
    assert len(first) == 1 and first[0].severity == "blue" and first[0].value == 1
    assert first[0].community == "yanhu" and "艳湖路燃气管巡检" in first[0].message
    book.add("p1", "北口阀井", at(2, 10))  # one checkpoint of two: the 2nd is still missed
    rig.clock.t = at(3, 0.05)
    rig.engine.check_silence(REGISTRY)
    now = rig.of("patrol_missed")[-1]
    assert now.alert_id == first[0].alert_id and now.severity == "yellow" and now.value == 2
    assert "连续两轮漏检" in now.message
    rig.clock.t = at(3, 9)
    book.add("p1", "北口阀井", at(3, 8.5))
    book.add("p1", "东门调压箱", at(3, 8.9))
    rig.engine.check_silence(REGISTRY)
    rig.engine.tick()
    last = rig.of("patrol_missed")[-1]
    assert last.alert_id == first[0].alert_id and last.state == "resolved"
    assert ("patrol_missed", "p1") not in rig.engine.open
