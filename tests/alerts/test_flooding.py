"""Flooding devices from ingest's heartbeats (real files, real store): one alert per device with its
cut count, one for a compound whose devices flood together, cleared when they calm down."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from alerts.engine import Engine
from alerts.flooding import FloodWatch
from alerts.rules import load_ruleset
from alerts.store import AlertStore
from core import heartbeat
from core.contract import Alert
from tests.alerts.test_engine import Clock
from tests.alerts.test_places import fleet

CALM_S = 0.4


class FloodRig:
    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "var"
        self.clock = Clock()
        self.store = AlertStore(tmp_path / "a.sqlite")
        self.published: list[Alert] = []
        rules = [dataclasses.replace(r, params={"calm_s": CALM_S, "place_min": 3})
                 if r.trigger == "flood" else r for r in load_ruleset().rules]
        self.engine = Engine(rules, self.store, self.published.append, 0, 0, clock=self.clock)
        self.watch = FloodWatch(self.engine, self.data)
        self.reg = fleet()

    def ingest_says(self, cut: dict[str, int], worker: int = 0) -> None:
        heartbeat.write(self.data, f"ingest-{worker}", {"rate_limited_devices": cut})

    def look(self) -> None:
        self.clock.t += 1
        self.watch.check(self.reg)
        self.engine.tick()

    def open_flood(self) -> dict[str, Alert]:
        return {a.device_id or a.compound_id: a for a in self.engine.open.values() if a.rule == "device_flooding"}


def test_one_flooding_device_is_one_alert_with_its_count(tmp_path: Path) -> None:
    rig = FloodRig(tmp_path)
    rig.ingest_says({"A1-G00": 120})
    rig.look()
    got = rig.open_flood()
    assert list(got) == ["A1-G00"]
    a = got["A1-G00"]
    assert a.severity == "yellow" and a.value == 120 and "120 条报文超出单台限速" in a.message
    rig.ingest_says({"A1-G00": 480})  # still flooding: the same alert, its count updated
    rig.look()
    assert [x.value for x in rig.open_flood().values()] == [480]
    assert len({x.alert_id for x in rig.published}) == 1

    # Two workers each cut some of its messages: counted together.
    rig.ingest_says({"A1-G00": 500}, worker=1)
    rig.look()
    assert rig.open_flood()["A1-G00"].value == 980

    # Calm: no new cut for calm_s → cleared, resolved after the hold-off (0 here).
    time.sleep(CALM_S + 0.1)
    rig.look()
    rig.look()
    assert rig.open_flood() == {}
    assert rig.published[-1].state == "resolved" and rig.published[-1].device_id == "A1-G00"


def test_a_compound_flooding_together_is_one_alert(tmp_path: Path) -> None:
    rig = FloodRig(tmp_path)
    rig.ingest_says({"A1-G00": 50, "A1-G01": 60, "A1-C00": 70, "B1-G00": 30})
    rig.look()
    got = rig.open_flood()
    assert set(got) == {"A1", "B1-G00"}  # A1's three devices: one alert for A1; B1-G00 alone: its own
    place = got["A1"]
    assert place.device_id == "" and place.compound_id == "A1" and place.value == 180
    assert "3 台设备" in place.message
    # An unknown device id (not in the registry) is no alert: it is dead-lettered as unknown.
    rig.ingest_says({"A1-G00": 50, "A1-G01": 60, "A1-C00": 70, "B1-G00": 30, "NOPE-1": 999})
    rig.look()
    assert set(rig.open_flood()) == {"A1", "B1-G00"}
    time.sleep(CALM_S + 0.1)
    rig.look()
    rig.look()
    assert rig.open_flood() == {}
