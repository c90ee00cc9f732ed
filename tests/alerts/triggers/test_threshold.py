"""Threshold with a separate clear level (hysteresis), `for` on raise, and levels (severity rises on
the same alert, the message says so, the timeline has the step)."""

from __future__ import annotations

from alerts.timeline import Event as Step
from core.contract import Device
from tests.alerts.test_engine import tel
from tests.alerts.triggers.conftest import Rig

WATER = Device("W-1", "water", "yanhu", "YH-01", 30, 110.79, 32.65)


def feed(rig: Rig, values: list[float], every: float = 10) -> None:
    for v in values:
        rig.engine.handle(tel(WATER, rig.clock, pressure_mpa=v))
        rig.clock.t += every
        rig.engine.tick()


def test_water_pressure_low_needs_30_s_and_clears_only_above_the_clear_level(rig: Rig) -> None:
    feed(rig, [0.13, 0.13, 0.13])  # 0, 10, 20 s: not yet
    assert not rig.of("water_pressure_low")
    feed(rig, [0.13])  # 30 s
    assert len(rig.of("water_pressure_low")) == 1 and rig.of("water_pressure_low")[0].severity == "yellow"
    feed(rig, [0.15] * 12)  # two minutes inside the band (0.14 ≤ p < 0.16): not clear, not resolved
    assert rig.of("water_pressure_low")[-1].state == "active"
    feed(rig, [0.17] * 8)  # above the clear level for 80 s > hold-off
    assert rig.of("water_pressure_low")[-1].state == "resolved"
    assert len(rig.ids("water_pressure_low")) == 1


def test_a_value_wobbling_inside_the_band_does_not_flap(rig: Rig) -> None:
    feed(rig, [0.12] * 4)
    feed(rig, [0.139, 0.155, 0.141, 0.158] * 10)
    assert len(rig.ids("water_pressure_low")) == 1
    assert all(a.state == "active" for a in rig.of("water_pressure_low"))


def test_severity_rises_on_the_same_alert(rig: Rig) -> None:
    feed(rig, [0.12] * 4)
    first = rig.of("water_pressure_low")[-1]
    assert first.severity == "yellow"
    feed(rig, [0.04])
    now = rig.of("water_pressure_low")[-1]
    assert now.alert_id == first.alert_id and now.severity == "orange"
    assert "升级" in now.message and "压力骤降" in now.message
    steps = [s for s in rig.store.timeline(first.alert_id) if s.event == Step.SEVERITY_RAISED]
    assert len(steps) == 1 and steps[0].data["from"] == "yellow" and steps[0].data["to"] == "orange"
    feed(rig, [0.03, 0.04])  # stays orange, no second step
    assert len([s for s in rig.store.timeline(first.alert_id) if s.event == Step.SEVERITY_RAISED]) == 1


def test_gas_level_two_at_50_lel_is_written_on_the_red_alarm(rig: Rig) -> None:
    gas = Device("G-1", "gas", "yanling", "YL-01", 10, 110.79, 32.65)
    rig.engine.handle(tel(gas, rig.clock, lel_pct=30.0))
    rig.clock.t += 2
    rig.engine.handle(tel(gas, rig.clock, lel_pct=55.0))
    high = rig.of("gas_lel_high")
    assert len({a.alert_id for a in high}) == 1 and high[-1].severity == "red"
    assert "高报 (≥ 50 %LEL)" in high[-1].message  # the detector's level, never a word of the 一级..四级 scale
    assert not any(w in high[-1].message for w in ("一级", "二级"))
    assert any(s.event == Step.SEVERITY_RAISED and s.data.get("level") for s in rig.store.timeline(high[0].alert_id))
