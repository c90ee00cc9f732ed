"""Rate of change: pressure falling faster than a set rate per minute."""

from __future__ import annotations

from pathlib import Path

from core.contract import Device
from tests.alerts.test_engine import tel
from tests.alerts.triggers.conftest import Rig

WATER = Device("W-1", "water", "yanhu", "YH-01", 30, 110.79, 32.65)
RULES = """rules:
  - name: pressure_falling
    trigger: rate
    kind: water
    metric: pressure_mpa
    op: "<="
    threshold: -0.1
    severity: orange
    message: "压力每分钟变化 {value} MPa"
"""


def test_fast_fall_raises_slow_drift_does_not(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RULES)
    for v in (0.40, 0.39, 0.38, 0.37):  # -0.02 MPa/min: drift
        rig.engine.handle(tel(WATER, rig.clock, pressure_mpa=v))
        rig.clock.t += 30
    assert not rig.of("pressure_falling")
    rig.engine.handle(tel(WATER, rig.clock, pressure_mpa=0.20))  # -0.34 MPa/min
    got = rig.of("pressure_falling")
    assert len(got) == 1 and got[0].value < -0.1


def test_a_late_reading_is_not_differentiated(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RULES)
    rig.engine.handle(tel(WATER, rig.clock, pressure_mpa=0.40))
    rig.clock.t -= 60  # a reading from a minute earlier, arriving late
    rig.engine.handle(tel(WATER, rig.clock, pressure_mpa=0.10))
    assert not rig.of("pressure_falling")
