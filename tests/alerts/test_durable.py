"""State that survives: the engine stopped without warning (no save at exit) and started again on the
same store carries on — open alerts stay open without a clearing reading, nothing is raised twice,
started_at is kept, for_s and hold-off timers carry on; a device silent in alarm keeps its alarm."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts.engine import SILENT_MARK, Engine
from alerts.migrations import migrate
from alerts.rules import load_ruleset
from alerts.store import AlertStore, open_store
from alerts.timeline import Event as Step
from core.contract import Alert, Device
from core.validation import Event, Telemetry
from tests.alerts.test_engine import CAM, GAS, Clock, tel
from tests.alerts.test_store import PREVIOUS_SCHEMA


class Rig:
    """An engine on a real store (a SQLite file or a PostgreSQL database) that can be 'killed' (dropped
    with no save, no close) and restarted."""

    def __init__(self, path: Path | str, fold_window_s: float = 0.0) -> None:
        self.path = str(path)
        self.clock = Clock()
        self.published: list[Alert] = []
        self.fold_window_s = fold_window_s
        self.store = open_store(self.path)
        self.engine = self._engine()

    def _engine(self) -> Engine:
        return Engine(load_ruleset(), self.store, self.published.append, holdoff_s=60, update_min_s=0,
                      clock=self.clock, fold_window_s=self.fold_window_s)

    def kill_and_restart(self) -> None:
        """Like kill -9: what the last tick saved is all there is (the store is a new connection)."""
        self.store = open_store(self.path)
        self.engine = self._engine()

    def rule(self, name: str) -> list[Alert]:
        return [a for a in self.published if a.rule == name]


@pytest.fixture
def rig(store_url: str) -> Rig:
    """On each backend: the SQLite file, then PostgreSQL."""
    return Rig(store_url)


def test_open_alert_without_a_clearing_reading_stays_open_after_a_restart(rig: Rig) -> None:
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=55.0))
    rig.engine.tick()
    first = rig.rule("gas_lel_high")[0]
    rig.kill_and_restart()
    for _ in range(20):  # 10 minutes, no reading at all: absence of evidence is not a clear
        rig.clock.t += 30
        rig.engine.tick()
    stored = rig.store.get(first.alert_id)
    assert stored is not None and stored.state == "active" and stored.started_at == first.started_at
    assert all(a.state != "resolved" for a in rig.published)
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=56.0))  # still high: the same alert, not a second
    assert {a.alert_id for a in rig.rule("gas_lel_high")} == {first.alert_id}
    assert len(rig.store.list()) == 1


def test_for_timer_carries_on_across_a_restart(rig: Rig) -> None:
    for _ in range(3):  # 0, 10, 20 s at 12 %LEL
        rig.engine.handle(tel(GAS, rig.clock, lel_pct=12.0))
        rig.clock.t += 10
    rig.engine.tick()
    rig.kill_and_restart()
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=12.0))  # 30 s after it became true
    assert len(rig.rule("gas_lel_warn")) == 1


def test_holdoff_carries_on_across_a_restart(rig: Rig) -> None:
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=30.0))
    rig.clock.t += 5
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=1.0))  # clearing reading: the hold-off starts
    rig.engine.tick()
    rig.kill_and_restart()
    rig.clock.t += 40
    rig.engine.tick()
    assert rig.published[-1].state == "active"
    rig.clock.t += 21  # 61 s after the clearing reading
    rig.engine.tick()
    assert rig.published[-1].rule == "gas_lel_high" and rig.published[-1].state == "resolved"


def test_what_was_not_saved_before_a_kill_is_not_invented(rig: Rig) -> None:
    """A clearing reading that arrived after the last save is lost with the process: the alert stays open
    (safe side), and a clearing reading after the restart resolves it."""
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=30.0))
    rig.engine.tick()
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=1.0))  # not saved: no tick before the kill
    rig.kill_and_restart()
    rig.clock.t += 120
    rig.engine.tick()
    assert rig.published[-1].state == "active"
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=1.0))
    rig.clock.t += 61
    rig.engine.tick()
    assert rig.published[-1].state == "resolved"


def test_silent_device_in_alarm_keeps_its_alarm_and_says_so(rig: Rig) -> None:
    registry = {GAS.device_id: GAS}
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=55.0))
    alarm = rig.rule("gas_lel_high")[0]
    for _ in range(10):  # 5 minutes of silence
        rig.clock.t += 30
        rig.engine.tick()
        rig.engine.check_silence(registry)
    now = rig.store.get(alarm.alert_id)
    assert now is not None and now.state == "active" and SILENT_MARK in now.message
    assert not rig.rule("device_silent"), "the silence is on the alarm, not a second alert"
    steps = [s.event for s in rig.store.timeline(alarm.alert_id)]
    assert steps.count(Step.DEVICE_SILENT) == 1
    rig.kill_and_restart()  # the fact survives a restart: not written twice
    rig.clock.t += 30
    rig.engine.check_silence(registry)
    assert [s.event for s in rig.store.timeline(alarm.alert_id)].count(Step.DEVICE_SILENT) == 1
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=54.0))  # it talks again
    back = rig.store.get(alarm.alert_id)
    assert back is not None and SILENT_MARK not in back.message
    assert Step.DEVICE_BACK in [s.event for s in rig.store.timeline(alarm.alert_id)]


def test_device_silence_alert_survives_a_restart_without_a_second_one(rig: Rig) -> None:
    registry = {GAS.device_id: GAS}
    rig.engine.handle(tel(GAS, rig.clock, lel_pct=0.0))
    rig.clock.t += 31
    rig.engine.check_silence(registry)
    rig.engine.tick()
    silent = rig.rule("device_silent")
    assert len(silent) == 1
    rig.kill_and_restart()
    for _ in range(10):
        rig.clock.t += 30
        rig.engine.tick()
        rig.engine.check_silence(registry)
    assert {a.alert_id for a in rig.rule("device_silent")} == {silent[0].alert_id}
    assert all(a.state == "active" for a in rig.rule("device_silent"))


def test_tamper_closes_on_a_normal_frame_rate_after_the_event_not_on_silence(rig: Rig) -> None:
    t0 = rig.clock.t
    rig.engine.handle(Event(CAM, int(t0 * 1000), "tamper", "镜头被遮挡"))
    tamper = rig.rule("camera_tamper")[0]
    rig.clock.t += 600  # nothing from the camera: stays open
    rig.engine.tick()
    rig.kill_and_restart()
    rig.clock.t += 600
    rig.engine.tick()
    assert rig.store.get(tamper.alert_id).state == "active"  # type: ignore[union-attr]
    # A reading timed before the event says nothing about it.
    rig.engine.handle(Telemetry(CAM, int(t0 * 1000) - 5000, None, {"fps": 25.0, "online": True}))
    rig.clock.t += 400
    rig.engine.tick()
    assert rig.store.get(tamper.alert_id).state == "active"  # type: ignore[union-attr]
    rig.engine.handle(tel(CAM, rig.clock, fps=3.0, online=True))  # low frame rate: not normal
    rig.clock.t += 400
    rig.engine.tick()
    assert rig.store.get(tamper.alert_id).state == "active"  # type: ignore[union-attr]
    rig.engine.handle(tel(CAM, rig.clock, fps=25.0, online=True))
    rig.clock.t += 299
    rig.engine.tick()
    assert rig.store.get(tamper.alert_id).state == "active"  # type: ignore[union-attr]
    rig.clock.t += 2  # the rule's own hold-off, 300 s
    rig.engine.tick()
    assert rig.store.get(tamper.alert_id).state == "resolved"  # type: ignore[union-attr]


def test_a_store_of_the_previous_schema_gets_the_condition_tables(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    db = sqlite3.connect(path)
    db.executescript(PREVIOUS_SCHEMA)
    db.execute("INSERT INTO alerts(alert_id, rule, severity, state, community, started_at, updated_at, message,"
               " subject, device_id) VALUES ('a-old', 'gas_lel_high', 'red', 'active', 'yanling',"
               " '2026-11-25T03:00:00.000Z', '2026-11-25T03:00:00.000Z', 'm', 'G-1', 'G-1')")
    db.commit()
    assert migrate(db, upto=5) == 5  # the schema before condition state (dispatches and archives in)
    db.close()
    store = AlertStore(path)  # migrates 0005 → latest
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"conditions", "device_seen", "shelves"} <= tables
    published: list[Alert] = []
    clock = Clock()
    engine = Engine(load_ruleset(), store, published.append, 60, 0, clock=clock)
    clock.t += 3600
    engine.tick()
    assert store.get("a-old").state == "active"  # type: ignore[union-attr]
    engine.handle(Telemetry(Device("G-1", "gas", "yanling", "YL-01", 10, 110.79, 32.65), 1, None,
                            {"lel_pct": 40.0}))
    assert [a.alert_id for a in published] == ["a-old"]
    store.close()


def test_a_place_alert_is_not_cleared_by_a_restart_while_the_place_is_still_down(tmp_path: Path) -> None:
    from tests.alerts.test_places import Rig as PlaceRig

    rig = PlaceRig(tmp_path)
    rig.report()
    others = [d for d in rig.reg if not d.startswith("A1-")]
    rig.run(120, talking=others)
    place = [a for a in rig.raised().values() if a.rule == "compound_silent"]
    assert len(place) == 1
    rig.engine.tick()
    # kill -9 and a new engine on the same store: for its first minute nothing is overdue yet
    rig.engine = Engine(load_ruleset(), AlertStore(tmp_path / "a.sqlite"), rig.published.append, 60, 0,
                        clock=rig.clock, fold_window_s=30)
    rig.run(600, talking=others)
    assert rig.store.get(place[0].alert_id).state == "active"  # type: ignore[union-attr]
    assert [a.rule for a in rig.raised().values()] == ["compound_silent"]
