"""Group rules over a compound / building / neighbouring meters: one alert for the pattern, the device
alerts it stands for folded (not raised), and no group alert when the pattern does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import Engine
from alerts.rules import load_ruleset
from alerts.store import AlertStore
from core.contract import Alert, Device
from core.validation import Status, Telemetry
from tests.alerts.test_engine import Clock


def dev(i: str, kind: str, cmp: str, bld: str, iv: float, lon: float = 110.79, lat: float = 32.65) -> Device:
    return Device(i, kind, "yanling", cmp, iv, lon, lat, {"building_id": bld})


FLEET = {d.device_id: d for d in (
    [dev(f"C{i}", "camera", "YL-01", "B1", 30) for i in range(4)]
    + [dev(f"P{i}", "power", "YL-01", "B1" if i == 0 else "B2", 15) for i in range(3)]
    + [dev(f"G{i}", "gas", "YL-01", "B1" if i < 3 else "B2", 10) for i in range(6)]
    + [dev("W0", "water", "YL-01", "B1", 30), dev("W1", "water", "YL-02", "B9", 30, 110.792, 32.651),
       dev("W2", "water", "YL-03", "B8", 30, 110.90, 32.70)]
)}
NORMAL = {"camera": {"online": True, "fps": 25.0}, "power": {"voltage_v": 224.0, "temp_c": 40.0},
          "gas": {"lel_pct": 1.0}, "water": {"pressure_mpa": 0.33, "flow_m3h": 3.0}}


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.store = AlertStore(tmp_path / "a.sqlite")
        self.published: list[Alert] = []
        self.engine = Engine(load_ruleset(), self.store, self.published.append, 60, 0, clock=self.clock,
                             fold_window_s=30)
        self.over: dict[str, dict[str, float | bool]] = {}
        self.quiet: set[str] = set()

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds // 5)):
            self.clock.t += 5
            for d in FLEET.values():
                if d.device_id in self.quiet:
                    continue
                m = {**NORMAL[d.kind], **self.over.get(d.device_id, {})}
                self.engine.handle(Telemetry(d, int(self.clock.t * 1000), None, m))  # type: ignore[arg-type]
            self.engine.tick()
            self.engine.check_silence(FLEET)

    def offline(self, ids: list[str]) -> None:
        for i in ids:
            self.quiet.add(i)
            self.engine.handle(Status(FLEET[i], int(self.clock.t * 1000), "offline", from_will=True))

    def raised(self) -> list[tuple[str, str]]:
        seen: dict[str, Alert] = {}
        for a in self.published:
            seen.setdefault(a.alert_id, a)
        return sorted((a.rule, a.device_id or a.compound_id) for a in seen.values())


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    r.run(60)  # everyone reports normally first
    assert r.raised() == []
    return r


def test_cameras_offline_and_voltage_lost_is_one_power_outage(rig: Rig) -> None:
    for p in ("P0", "P1", "P2"):
        rig.over[p] = {"voltage_v": 0.0}
    rig.offline(["C0", "C1", "C2", "C3"])
    rig.run(300)
    assert rig.raised() == [("power_outage", "YL-01")]
    a = next(a for a in rig.published if a.rule == "power_outage")
    assert a.severity == "orange" and "3/3" in a.message and "4/4" in rig.store.get(a.alert_id).message  # type: ignore[union-attr]


def test_cameras_offline_while_power_is_fine_is_possible_sabotage(rig: Rig) -> None:
    rig.offline(["C0", "C1", "C2"])
    rig.run(300)
    assert rig.raised() == [("camera_sabotage", "YL-01")]


def test_one_camera_offline_is_its_own_alert_not_sabotage(rig: Rig) -> None:
    rig.offline(["C0"])
    rig.run(120)
    assert rig.raised() == [("camera_offline", "C0")]


def test_pressure_collapse_at_two_neighbours_with_a_flow_spike_is_one_main_burst(rig: Rig) -> None:
    rig.over["W0"] = {"pressure_mpa": 0.03, "flow_m3h": 12.0}
    rig.over["W1"] = {"pressure_mpa": 0.04}
    rig.run(300)
    assert rig.raised() == [("main_burst", "YL-01")]


def test_collapse_at_one_meter_only_is_not_a_burst(rig: Rig) -> None:
    rig.over["W0"] = {"pressure_mpa": 0.03, "flow_m3h": 12.0}
    rig.over["W2"] = {"pressure_mpa": 0.03}  # far away: not a neighbour
    rig.run(120)
    got = rig.raised()
    assert ("main_burst", "YL-01") not in got and ("water_pressure_low", "W0") in got


def test_gas_rising_where_a_breaker_heats_is_fire_risk_in_that_building(rig: Rig) -> None:
    rig.over["G0"] = {"lel_pct": 12.0}
    rig.over["P0"] = {"temp_c": 66.0}  # same building B1
    rig.run(60)
    got = rig.raised()
    fire = [a for a in rig.published if a.rule == "fire_risk"]
    assert ("fire_risk", "YL-01") in got and fire[0].severity == "red" and "B1" in fire[0].message
    rig.over["P0"] = {"temp_c": 40.0}
    rig.over["P1"] = {"temp_c": 66.0}  # another building: no fire risk there
    rig.run(120)
    assert rig.store.get(fire[0].alert_id).state == "resolved"  # type: ignore[union-attr]
    assert len([a for a in {x.alert_id: x for x in rig.published if x.rule == "fire_risk"}]) == 1


def test_a_camera_still_offline_when_the_power_is_back_is_raised_then(rig: Rig) -> None:
    for p in ("P0", "P1", "P2"):
        rig.over[p] = {"voltage_v": 0.0}
    rig.offline(["C0", "C1", "C2", "C3"])
    rig.run(120)
    assert rig.raised() == [("power_outage", "YL-01")]
    for p in ("P0", "P1", "P2"):
        rig.over.pop(p)
    for c in ("C0", "C1", "C2"):  # three come back; C3 was damaged and stays offline
        rig.quiet.discard(c)
    rig.run(200)
    got = rig.raised()
    assert ("camera_offline", "C3") in got and ("camera_offline", "C0") not in got
    outage = next(a for a in rig.published if a.rule == "power_outage")
    assert rig.store.get(outage.alert_id).state == "resolved"  # type: ignore[union-attr]


def test_group_scan_finds_the_pattern_from_what_track_kept_and_clears_only_when_settled() -> None:
    """The group trigger's scan on its own: `track` keeps the readings, `scan` finds the place with the
    members it stands for, and an open alert whose pattern is gone is cleared only once settled."""
    from alerts.liveness import Liveness
    from alerts.triggers import Act, ScanView
    from alerts.triggers import group as group_trigger

    rules = [r for r in load_ruleset().rules if r.trigger == group_trigger.NAME]
    outage = next(r for r in rules if r.pattern == "power_outage")
    lost = group_trigger.param(outage, "lost_v")
    mem = group_trigger.memory(rules, None)
    now = 1_800_000_000.0
    meters = [d for d in FLEET.values() if d.kind == "power"]
    for d in meters:
        group_trigger.track(mem, Telemetry(d, int(now * 1000), None, {**NORMAL["power"], "voltage_v": lost / 2}))
    live = Liveness(FLEET, dict.fromkeys(FLEET, now))

    def scan(open_: tuple[tuple[str, str], ...], settled: bool) -> dict[tuple[str, str], Act]:
        view = ScanView(now, live, live.scan(now, now - 1000), dict.fromkeys(open_), {}, settled=settled,
                        memory={group_trigger.NAME: mem})
        found = list(group_trigger.scan(rules, view))
        if found and found[0].act is Act.RAISE:
            assert set(found[0].members) >= {d.device_id for d in meters}
        return {f.key: f.act for f in found}

    gone = (outage.name, "YL-09")
    assert scan((gone,), settled=False) == {(outage.name, "YL-01"): Act.RAISE}
    assert scan((gone,), settled=True) == {(outage.name, "YL-01"): Act.RAISE, gone: Act.CLEAR}
    # A reloaded rule set keeps the readings and starts the flags again.
    again = group_trigger.memory(rules, mem)
    assert again is mem and mem.readings[meters[0].device_id]["voltage_v"] == lost / 2
    assert not any(mem.flagged.values())
