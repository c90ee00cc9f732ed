"""Floods folded into places: a compound (or a community) going silent at once is one alert, devices
that never reported are one notice per community, and a lone silent device is still its own alert."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import Engine
from alerts.rules import load_ruleset
from alerts.store import AlertStore
from alerts.timeline import Event as Step
from core.contract import Alert, Device
from core.validation import Status, Telemetry
from tests.alerts.test_engine import Clock


def fleet() -> dict[str, Device]:
    """Two communities; community A has compounds A1 (10 gas, 4 cameras, 3 power) and A2 (6 gas);
    community B has B1 (8 gas)."""
    devs: list[Device] = []
    for comm, cmp, kind, n, iv in (("yanling", "A1", "gas", 10, 10), ("yanling", "A1", "camera", 4, 30),
                                   ("yanling", "A1", "power", 3, 15), ("yanling", "A2", "gas", 6, 10),
                                   ("yanhu", "B1", "gas", 8, 10)):
        for i in range(n):
            devs.append(Device(f"{cmp}-{kind[0].upper()}{i:02d}", kind, comm, cmp, iv, 110.79, 32.65))
    return {d.device_id: d for d in devs}


class Rig:
    def __init__(self, tmp_path: Path, fold_window_s: float = 30.0) -> None:
        self.clock = Clock()
        self.store = AlertStore(tmp_path / "a.sqlite")
        self.published: list[Alert] = []
        self.engine = Engine(load_ruleset(), self.store, self.published.append, 60, 0, clock=self.clock,
                             fold_window_s=fold_window_s)
        self.reg = fleet()

    def report(self, ids: list[str] | None = None) -> None:
        for d in self.reg.values():
            if ids is None or d.device_id in ids:
                m = {"gas": {"lel_pct": 0.0}, "camera": {"online": True, "fps": 25.0},
                     "power": {"voltage_v": 225.0}}[d.kind]
                self.engine.handle(Telemetry(d, int(self.clock.t * 1000), None, m))  # type: ignore[arg-type]

    def run(self, seconds: float, talking: list[str] | None = None, step: float = 5.0) -> None:
        """Advance time, scanning every `step` s; `talking` devices keep reporting."""
        t = 0.0
        while t < seconds:
            self.clock.t += step
            t += step
            if talking:
                self.report(talking)
            self.engine.tick()
            self.engine.check_silence(self.reg)

    def raised(self) -> dict[str, Alert]:
        first: dict[str, Alert] = {}
        for a in self.published:
            first.setdefault(a.alert_id, a)
        return first


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_compound_network_cut_is_one_alert(rig: Rig) -> None:
    rig.report()
    others = [d for d in rig.reg if not d.startswith("A1-")]
    rig.run(20, talking=others)
    # The broker fires the cameras' last wills 15 s into the cut.
    for d in rig.reg.values():
        if d.compound_id == "A1" and d.kind == "camera":
            rig.engine.handle(Status(d, int(rig.clock.t * 1000), "offline", from_will=True))
    rig.run(600, talking=others)
    alerts = list(rig.raised().values())
    assert [(a.rule, a.compound_id) for a in alerts] == [("compound_silent", "A1")], alerts
    place = alerts[0]
    assert place.severity == "orange" and place.device_id == "" and place.community == "yanling"
    assert "17/17" in rig.store.get(place.alert_id).message  # type: ignore[union-attr]
    # The devices come back: the place alert resolves after the hold-off.
    rig.report()
    rig.run(70, talking=list(rig.reg))
    assert rig.store.get(place.alert_id).state == "resolved"  # type: ignore[union-attr]
    assert len(rig.raised()) == 1


def test_a_whole_community_down_is_one_alert(rig: Rig) -> None:
    rig.report()
    b = [d for d in rig.reg if d.startswith("B1-")]
    rig.run(600, talking=b)
    alerts = list(rig.raised().values())
    assert [(a.rule, a.community, a.compound_id) for a in alerts] == [("community_silent", "yanling", "")]
    message = rig.store.get(alerts[0].alert_id).message  # type: ignore[union-attr]
    assert "23/23" in message and message.startswith("岩岭社区:") and "yanling" not in message  # by its name


def test_one_silent_device_is_still_its_own_alert(rig: Rig) -> None:
    rig.report()
    talking = [d for d in rig.reg if d != "A1-G00"]
    rig.run(120, talking=talking)
    alerts = list(rig.raised().values())
    assert [(a.rule, a.device_id) for a in alerts] == [("device_silent", "A1-G00")]
    assert alerts[0].severity == "blue"


def test_devices_that_never_reported_are_one_notice_per_community(rig: Rig) -> None:
    rig.run(300)  # nothing has ever reported: a fresh deployment
    alerts = list(rig.raised().values())
    assert sorted((a.rule, a.community) for a in alerts) == [("not_reporting", "yanhu"), ("not_reporting", "yanling")]
    assert all(a.severity == "blue" for a in alerts)
    # They start reporting: the notices resolve, and no silence alert appears.
    rig.run(200, talking=list(rig.reg))
    assert all(rig.store.get(a.alert_id).state == "resolved" for a in alerts)  # type: ignore[union-attr]
    assert len(rig.raised()) == 2


def test_silence_alerts_already_open_are_folded_under_the_place(tmp_path: Path) -> None:
    """Without a fold window single silences are raised first; when the place alert forms they are
    folded under it (timeline step, no more notifications), not resolved."""
    rig = Rig(tmp_path, fold_window_s=0.0)
    rig.report()
    others = [d for d in rig.reg if not d.startswith("A1-")]
    rig.run(35, talking=others, step=35)  # gas silent (30 s), cameras/power not yet overdue enough
    gas_silent = [a for a in rig.raised().values() if a.rule == "device_silent"]
    assert gas_silent
    rig.run(60, talking=others)
    place = [a for a in rig.raised().values() if a.rule == "compound_silent"]
    assert len(place) == 1
    for a in gas_silent:
        steps = rig.store.timeline(a.alert_id)
        assert [s.data.get("parent") for s in steps if s.event == Step.FOLDED] == [place[0].alert_id]
        assert rig.store.get(a.alert_id).state == "active"  # type: ignore[union-attr]
        assert a.alert_id in rig.engine.folded


def test_silence_scan_is_measured_from_our_own_restart(rig: Rig, tmp_path: Path) -> None:
    """After the engine was down, the devices are not silent: our feed was."""
    rig.report()
    rig.engine.tick()
    rig.clock.t += 3600  # the engine was down an hour
    store = AlertStore(tmp_path / "a.sqlite")
    engine = Engine(load_ruleset(), store, rig.published.append, 60, 0, clock=rig.clock, fold_window_s=30)
    engine.check_silence(rig.reg)
    assert rig.published == []


def test_a_quiet_minute_publishes_nothing(rig: Rig) -> None:
    """Open place alerts that do not change are not re-published on a timer: once raised, a quiet
    minute of scans every 5 s sends no message at all (before, every scan re-sent each of them)."""
    rig.report()
    b = [d for d in rig.reg if d.startswith("B1-")]
    rig.run(600, talking=b)  # community yanling silent: raised
    assert [a.rule for a in rig.raised().values()] == ["community_silent"]
    before = len(rig.published)
    rig.run(60, talking=b)
    assert len(rig.published) == before, [(a.rule, a.message) for a in rig.published[before:]]


def test_never_reported_notices_are_not_re_sent_either(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(300)
    assert sorted(a.rule for a in rig.raised().values()) == ["not_reporting", "not_reporting"]
    before = len(rig.published)
    rig.run(60)
    assert len(rig.published) == before, [(a.rule, a.message) for a in rig.published[before:]]
