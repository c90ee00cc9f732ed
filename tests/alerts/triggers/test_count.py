"""Count in a window: three residual-current excursions within 10 minutes."""

from __future__ import annotations

from core.contract import Device
from tests.alerts.test_engine import tel
from tests.alerts.triggers.conftest import Rig

POWER = Device("P-1", "power", "yanling", "YL-01", 15, 110.79, 32.65)


def spike(rig: Rig, at_s: float) -> None:
    for v in (40.0, 180.0, 40.0):
        rig.engine.handle(tel(POWER, rig.clock, leakage_ma=v))
        rig.clock.t += 15
    rig.clock.t += at_s


def test_three_spikes_in_ten_minutes(rig: Rig) -> None:
    spike(rig, 120)
    spike(rig, 120)
    assert not rig.of("power_leakage_repeat")
    spike(rig, 0)
    got = rig.of("power_leakage_repeat")
    assert len(rig.ids("power_leakage_repeat")) == 1 and got[0].severity == "yellow" and got[0].value == 3


def test_spikes_spread_over_more_than_the_window_do_not_count(rig: Rig) -> None:
    for _ in range(4):
        spike(rig, 330)  # ~6 min apart: never three inside 10 min
    assert not rig.of("power_leakage_repeat")


def test_a_held_excursion_is_one_spike_not_many(rig: Rig) -> None:
    for _ in range(10):
        rig.engine.handle(tel(POWER, rig.clock, leakage_ma=200.0))
        rig.clock.t += 15
    assert not rig.of("power_leakage_repeat")
