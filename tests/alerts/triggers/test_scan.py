"""The scan interface itself: a trigger module that defines `scan(rules, view)` is found by its
`NAME` and decides; the engine raises, updates, folds and resolves from its findings alone.

This module is the trigger under test (registered as `probe`, as a new file in alerts/triggers/
would be): it finds what `HOLDING` says, so each step below is one decision."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from alerts.rules import TRIGGERS
from alerts.triggers import Act, Finding, ScanView, Subject
from alerts.triggers import place as place_trigger
from core.contract import Device
from core.validation import Status
from tests.alerts.triggers.conftest import Rig

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "probe"
KEYS = frozenset({"place"})
HOLDING: dict[str, tuple[Act, int]] = {}  # place id -> what the probe finds there, and its value
SEEN: list[ScanView] = []

CAMS = [Device(f"C{i}", "camera", "yanhu", "YH-01", 30, 110.79 + i / 1000, 32.65) for i in range(3)]
REGISTRY = {d.device_id: d for d in CAMS}
RULES = """rules:
  - name: camera_offline
    kind: camera
    status: offline
    severity: yellow
    message: "摄像头离线"
  - name: probe_rule
    trigger: probe
    place: compound
    folds: [camera_offline]
    severity: orange
    holdoff_s: 30
    message: "{place} 探针 {value}"
"""


def validate(rule: Rule) -> str | None:
    return None


def place_of(rule: Rule) -> str:
    return "compound"


def scan(rules: list[Rule], view: ScanView) -> Iterable[Finding]:
    SEEN.append(view)
    for rule in rules:
        for place_id, (act, value) in HOLDING.items():
            where = Subject(place_id, "yanhu", place_id, "", "", 110.79, 32.65)
            yield Finding(rule, place_id, act, value, rule.render(value=value, place=place_id), place=where,
                          members=tuple(REGISTRY))
        for key in view.open:
            if key[0] == rule.name and key[1] not in HOLDING:
                yield Finding(rule, key[1], Act.CLEAR)


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setitem(TRIGGERS, NAME, sys.modules[__name__])
    HOLDING.clear()
    SEEN.clear()
    return Rig(tmp_path, RULES)


def test_a_scan_module_is_found_by_presence_and_sees_one_snapshot_per_scan(probe: Rig) -> None:
    assert [m.NAME for m, _ in probe.engine.scanners] == [NAME]  # the only scan rule in this file
    assert not any(r.trigger == NAME for rules in probe.engine.by_kind.values() for r in rules)  # never per record
    probe.engine.check_silence(REGISTRY)
    probe.engine.check_silence(REGISTRY)
    assert len(SEEN) == 2 and SEEN[0] is not SEEN[1]
    assert SEEN[-1].now == probe.clock.t and set(SEEN[-1].live.index) == set(REGISTRY)


def test_findings_raise_update_and_resolve_after_the_holdoff(probe: Rig) -> None:
    HOLDING["YH-01"] = (Act.WAIT, 2)
    probe.engine.check_silence(REGISTRY)
    assert not probe.published  # it holds, but the probe says wait
    probe.engine.save()
    assert probe.store.load_conditions()[("probe_rule", "YH-01")]["true_since_ts"] == int(probe.clock.t * 1000)
    HOLDING["YH-01"] = (Act.RAISE, 2)
    probe.clock.t += 5
    probe.engine.check_silence(REGISTRY)
    first = probe.of("probe_rule")
    assert len(first) == 1 and first[0].compound_id == "YH-01" and first[0].severity == "orange"
    assert first[0].message.startswith("YH-01 探针 2") and first[0].device_id == ""
    HOLDING["YH-01"] = (Act.RAISE, 3)
    probe.clock.t += 5
    probe.engine.check_silence(REGISTRY)
    assert probe.ids("probe_rule") == {first[0].alert_id}  # the same alert, updated
    assert probe.of("probe_rule")[-1].value == 3
    del HOLDING["YH-01"]
    probe.clock.t += 5
    probe.engine.check_silence(REGISTRY)
    probe.engine.tick()
    assert probe.of("probe_rule")[-1].state == "active"  # cleared: the hold-off runs first
    probe.clock.t += 31
    probe.engine.tick()
    assert probe.of("probe_rule")[-1].state == "resolved"
    assert ("probe_rule", "YH-01") not in probe.engine.open


def test_members_of_a_holding_finding_have_their_folded_alerts_folded_under_it(probe: Rig) -> None:
    probe.engine.handle(Status(CAMS[0], int(probe.clock.t * 1000), "offline", from_will=True))
    cam = probe.of("camera_offline")
    assert len(cam) == 1
    HOLDING["YH-01"] = (Act.RAISE, 1)
    probe.engine.check_silence(REGISTRY)
    parent = probe.of("probe_rule")[-1]
    steps = [s for s in probe.store.timeline(cam[0].alert_id) if s.event == "folded"]
    assert len(steps) == 1 and steps[0].data["parent"] == parent.alert_id
    assert probe.engine.folding["YH-01"] == {"camera_offline"}
    assert all(probe.engine.member_of[d] == ("probe_rule", "YH-01") for d in REGISTRY)


def test_a_place_module_defines_what_a_scan_module_may(probe: Rig) -> None:
    """The place trigger is a scan module like the probe: no per-record `evaluate`, a `scan`, and the
    optional `liveness` (its keywords for Liveness.scan) and `place_of`."""
    assert not hasattr(place_trigger, "evaluate")
    for name in ("scan", "liveness", "place_of", "validate"):
        assert callable(getattr(place_trigger, name))
