"""Events: a latched event is closed only by a person; the default camera_tamper ends on a normal
frame rate after the event (tests/alerts/test_durable.py covers that across a restart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.rules import RuleError, load_rules
from core.validation import Event
from tests.alerts.test_engine import CAM, tel
from tests.alerts.triggers.conftest import Rig

LATCHED = """rules:
  - name: tamper_latched
    kind: camera
    event: tamper
    latch: true
    severity: orange
    message: "遮挡 {detail}"
"""


def test_latched_event_only_closes_by_hand(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LATCHED)
    rig.engine.handle(Event(CAM, int(rig.clock.t * 1000), "tamper", "lens"))
    aid = rig.of("tamper_latched")[0].alert_id
    rig.clock.t += 10
    rig.engine.handle(tel(CAM, rig.clock, fps=25.0, online=True))
    rig.clock.t += 3600
    rig.engine.tick()
    assert rig.store.get(aid).state == "active"  # type: ignore[union-attr]
    rig.store.resolve(aid, "2026-11-25T03:00:00Z", by="张三")
    rig.engine.tick()
    assert rig.store.get(aid).state == "resolved" and rig.store.get(aid).resolved_by == "张三"  # type: ignore[union-attr]


def test_a_second_event_restarts_the_clear(rig: Rig) -> None:
    t = rig.clock
    rig.engine.handle(Event(CAM, int(t.t * 1000), "tamper", "lens"))
    t.t += 10
    rig.engine.handle(tel(CAM, t, fps=25.0))
    t.t += 200
    rig.engine.handle(Event(CAM, int(t.t * 1000), "tamper", "again"))
    t.t += 200  # 400 s after the first normal reading, 200 after the second event
    rig.engine.tick()
    assert rig.of("camera_tamper")[-1].state == "active"
    assert len(rig.ids("camera_tamper")) == 1


def test_latch_and_clear_metric_do_not_go_together(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(LATCHED.replace("latch: true", "latch: true\n    clear_metric: fps\n    clear_op: '>='\n"
                                 "    clear_threshold: 15"))
    with pytest.raises(RuleError, match="latched"):
        load_rules(p)
