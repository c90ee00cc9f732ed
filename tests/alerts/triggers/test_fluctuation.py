"""Level and fluctuation over a window: a gas leak in a sewer manhole (high, swinging) raises
manhole_gas_leak; sewer biogas (low, steady) and a well airing out raise nothing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alerts.rules import RuleError, load_ruleset
from alerts.triggers.fluctuation import level_and_fluctuation
from core.contract import MANHOLE, Device
from tests.alerts.test_engine import tel
from tests.alerts.triggers.conftest import Rig

WELL = Device("G-9", "gas", "lanshanjun", "LSJ-03", 10, 110.79, 32.65, {"install": MANHOLE})
KITCHEN = Device("G-8", "gas", "lanshanjun", "LSJ-03", 10, 110.79, 32.65, {"install": "厨房"})
GAS_RULES = ("manhole_gas_leak", "gas_lel_warn", "gas_lel_high")


def feed(rig: Rig, dev: Device, values: list[float], step_s: float = 10) -> None:
    for v in values:
        rig.engine.handle(tel(dev, rig.clock, lel_pct=v))
        rig.clock.t += step_s
        rig.engine.tick()


def gusts(n: int, low: float = 4.0, high: float = 16.0) -> list[float]:
    """A leak's readings: swinging between low and high, never four in a row at or above 10 %LEL."""
    return [high if i % 2 else low for i in range(n)]


def test_level_and_fluctuation_are_mean_and_rms_of_successive_differences_over_the_mean() -> None:
    mean, swing = level_and_fluctuation([2.0, 4.0, 2.0, 4.0])
    assert mean == 3.0 and math.isclose(swing, 2.0 / 3.0)
    assert level_and_fluctuation([1.0, 2.0, 3.0, 4.0])[1] == pytest.approx(1.0 / 2.5)  # a ramp: steps of 1
    assert level_and_fluctuation([0.0, 0.0, 0.0]) == (0.0, 0.0)


def test_a_swinging_leak_in_a_manhole_raises_one_orange_alert(rig: Rig) -> None:
    feed(rig, WELL, [0.5] * 30)
    feed(rig, WELL, gusts(10))  # 100 s: the 5-minute window's mean is still below 5 %LEL
    assert not rig.of("manhole_gas_leak")
    feed(rig, WELL, gusts(30))
    got = rig.of("manhole_gas_leak")
    assert len(rig.ids("manhole_gas_leak")) == 1 and got[0].severity == "orange" and got[0].state == "active"
    assert got[0].value >= 5 and "窨井" in got[0].message
    assert not rig.of("gas_lel_warn")  # the single threshold never held 30 s: it would have missed this


def test_steady_biogas_in_a_manhole_raises_nothing(rig: Rig) -> None:
    build_up = [0.5 + 6.5 * i / 60 for i in range(60)]  # 10 minutes to 7 %LEL
    steady = [7.0 + (0.3 if i % 3 == 0 else -0.15) for i in range(180)]  # half an hour, ±0.3 %LEL
    airing = [7.0 - 6.5 * i / 18 for i in range(18)]  # the opened well airs out in 3 minutes
    feed(rig, WELL, build_up + steady + airing + [0.5] * 30)
    assert not [a for r in GAS_RULES for a in rig.of(r)]


def test_a_kitchen_detector_is_not_a_manhole(rig: Rig) -> None:
    feed(rig, KITCHEN, gusts(40))
    assert not rig.of("manhole_gas_leak")


def test_it_stays_open_while_the_well_holds_gas_and_resolves_once_the_level_falls(rig: Rig) -> None:
    feed(rig, WELL, gusts(40))
    assert rig.of("manhole_gas_leak")[-1].state == "active"
    feed(rig, WELL, [8.0] * 60)  # steady but still high: neither a new alert nor a close
    assert len(rig.ids("manhole_gas_leak")) == 1 and rig.of("manhole_gas_leak")[-1].state == "active"
    feed(rig, WELL, [0.5] * 60)  # the mean falls below 2.5 %LEL, then the hold-off runs out
    assert len(rig.ids("manhole_gas_leak")) == 1 and rig.of("manhole_gas_leak")[-1].state == "resolved"


def test_late_readings_do_not_enter_the_window(rig: Rig) -> None:
    feed(rig, WELL, [6.0] * 40)
    rig.clock.t -= 200  # readings from the past, swinging: dropped, so the steady window stays steady
    feed(rig, WELL, gusts(15))
    assert not rig.of("manhole_gas_leak")


@pytest.mark.parametrize(("params", "reason"), [
    ("{min_samples: 12}", "fluctuation > 0 is required"),
    ("{fluctuation: 0.3, cv: 1}", "params of a fluctuation rule"),
    ("{fluctuation: 0.3, min_samples: 2}", "min_samples"),
])
def test_a_bad_fluctuation_rule_is_refused(tmp_path: Path, params: str, reason: str) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text("rules:\n  - name: x\n    kind: gas\n    trigger: fluctuation\n    metric: lel_pct\n"
                 "    threshold: 5\n    clear_threshold: 2.5\n    window_s: 300\n"
                 f"    params: {params}\n    severity: orange\n    message: m\n", encoding="utf-8")
    with pytest.raises(RuleError, match=reason):
        load_ruleset(p)
