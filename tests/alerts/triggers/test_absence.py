"""The absence trigger's scan: a device past its silence limit is found (its value the silence, its
threshold the limit), unless it is in alarm (its alarm says so instead), its place is down, it is
already raised, or a rule that stands for it is open."""

from __future__ import annotations

import pytest

from alerts.liveness import Liveness
from alerts.rules import Rule, load_ruleset
from alerts.triggers import Act, Finding, Key, ScanView, absence, place
from core.contract import Device

T0 = 1_800_000_000.0
FLEET = {d.device_id: d for d in (
    [Device(f"G{i}", "gas", "yanhu", "YH-01", 10.0, 110.79, 32.65) for i in range(5)]
    + [Device(f"K{i}", "gas", "yanhu", "YH-02", 10.0, 110.80, 32.66) for i in range(4)]
    + [Device("C0", "camera", "yanhu", "YH-01", 30.0, 110.79, 32.65)])}


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return load_ruleset().rules


def find(rules: list[Rule], quiet: dict[str, float], now: float, *, open_: tuple[Key, ...] = (),
         alarmed: frozenset[str] = frozenset()) -> list[Finding]:
    """Devices in `quiet` last heard at that time, the others at `now`."""
    mine = [r for r in rules if r.trigger == absence.NAME]
    live = Liveness(FLEET, {d: quiet.get(d, now) for d in FLEET})
    kw = {**absence.liveness(mine), **place.liveness([r for r in rules if r.trigger == place.NAME])}
    view = ScanView(now, live, live.scan(now, T0 - 1000, **kw), dict.fromkeys(open_), {}, alarmed)
    return list(absence.scan(mine, view))


def silent_rule(rules: list[Rule]) -> Rule:
    return next(r for r in rules if r.trigger == absence.NAME and r.kind is None)


def test_a_device_past_its_limit_is_found_with_its_silence(rules: list[Rule]) -> None:
    r = silent_rule(rules)
    limit = float(r.silent_factor or absence.FACTOR) * FLEET["G0"].interval_s
    assert find(rules, {"G0": T0}, T0 + limit - 1) == []
    found = find(rules, {"G0": T0}, T0 + limit + 2)
    assert [(f.rule.name, f.subject, f.act) for f in found] == [(r.name, "G0", Act.RAISE)]
    assert found[0].value == round(limit + 2, 1) and found[0].threshold == limit and found[0].device is FLEET["G0"]
    assert f"{limit + 2:.0f}" in found[0].message


def test_in_alarm_raised_suppressed_or_in_a_silent_place_it_is_not_raised(rules: list[Rule]) -> None:
    r = silent_rule(rules)
    late = T0 + 10 * float(r.silent_factor or absence.FACTOR) * 10
    found = find(rules, {"G0": T0}, late, alarmed=frozenset({"G0"}))
    assert [(f.subject, f.act) for f in found] == [("G0", Act.SILENT_IN_ALARM)]  # its alarm stays and says so
    assert find(rules, {"G0": T0}, late, open_=((r.name, "G0"),)) == []
    assert r.suppressed_by and find(rules, {"G0": T0}, late, open_=((r.suppressed_by[0], "G0"),)) == []
    # All of YH-02 silent: the place's alert stands for them; G0 in YH-01 is still found.
    found = find(rules, {"G0": T0, **dict.fromkeys((d for d in FLEET if d.startswith("K")), T0)}, late)
    assert {f.subject for f in found} == {"G0"}
