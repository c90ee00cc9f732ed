"""State: the camera's offline status or `online: false`; the opposite state clears it."""

from __future__ import annotations

from core.validation import Status
from tests.alerts.test_engine import CAM, tel
from tests.alerts.triggers.conftest import Rig


def test_online_false_then_true_resolves_after_the_holdoff(rig: Rig) -> None:
    rig.engine.handle(tel(CAM, rig.clock, online=False))
    rig.clock.t += 5
    rig.engine.handle(tel(CAM, rig.clock, online=True))
    rig.clock.t += 61
    rig.engine.tick()
    assert [a.state for a in rig.of("camera_offline")] == ["active", "resolved"]


def test_offline_status_raises_and_a_repeat_updates(rig: Rig) -> None:
    rig.engine.handle(Status(CAM, int(rig.clock.t * 1000), "offline", from_will=True))
    rig.clock.t += 5
    rig.engine.handle(Status(CAM, int(rig.clock.t * 1000), "offline", from_will=True))
    assert len(rig.ids("camera_offline")) == 1
