"""The alert service's notification wiring: a bad channels file refused at start with file:line,
a bad edit while running keeps the running channels, escalation recorded in the timeline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from alerts.service import AlertService
from core.settings import Settings
from tests.alerts.channels.receivers import WeComRobot

ROOT = Path(__file__).resolve().parents[2]


def test_alerts_refuses_to_start_on_a_bad_channels_file(tmp_path: Path) -> None:
    bad = tmp_path / "channels.yaml"
    bad.write_text("channels:\n  - id: g\n    kind: wecom\n    url: ftp://nowhere\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_DATA_DIR=str(tmp_path / "var"), SC_ALERTS_CHANNELS_FILE=str(bad))
    r = subprocess.run([sys.executable, "-m", "smartcommunity.cli", "alerts"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and f"{bad}:4: g: a wecom url is http(s)://" in r.stderr


def test_a_bad_edit_keeps_the_running_channels(settings: Settings, tmp_path: Path) -> None:
    from dataclasses import replace

    robot = WeComRobot()
    chans = tmp_path / "channels.yaml"
    chans.write_text(f"channels:\n  - {{id: g, kind: wecom, url: '{robot.robot_url}'}}\n", encoding="utf-8")
    s = replace(settings, alerts_channels_file=str(chans))
    svc = AlertService(s)
    try:
        svc.channels.poll_s = svc.channels._next = 0  # type: ignore[union-attr]
        assert list(svc.delivery.workers) == ["g"]
        chans.write_text("channels:\n  - {id: g, kind: wecom}\n", encoding="utf-8")
        os.utime(chans, ns=(time.time_ns() + 10**9,) * 2)
        svc._reload_channels()
        assert list(svc.delivery.workers) == ["g"] and svc.delivery.workers["g"].target.url == robot.robot_url
        assert ":2: g: `url` must be a URL" in svc.snapshot()["config_errors"][0]  # type: ignore[index]
        chans.write_text(f"channels:\n  - {{id: g, kind: wecom, url: '{robot.robot_url}'}}\n"
                         f"  - {{id: h, kind: webhook, url: '{robot.url}/hook'}}\n", encoding="utf-8")
        os.utime(chans, ns=(time.time_ns() + 2 * 10**9,) * 2)
        svc._reload_channels()
        assert sorted(svc.delivery.workers) == ["g", "h"] and svc.snapshot()["config_errors"] == []
    finally:
        svc.delivery.stop()
        svc.store.close()
        robot.close()


def test_escalation_is_a_timeline_step_naming_who(tmp_path: Path) -> None:
    from alerts.engine import Engine
    from alerts.message import Places
    from alerts.notify import Escalation, Notifier
    from alerts.roster import load_roster
    from alerts.rules import load_rules
    from alerts.store import AlertStore
    from core.registry import bundled_registry_path, load_registry
    from core.timebase import iso
    from core.validation import Telemetry

    reg = load_registry(bundled_registry_path())
    store = AlertStore(tmp_path / "a.sqlite")
    t = [1_795_000_000.0]
    rec = lambda a, e, d: store.record(a, e, iso(t[0]), data=d)  # noqa: E731
    esc = Escalation(load_roster(), Notifier(tmp_path / "outbox.jsonl", Places(reg.get), record=rec))
    published = []
    engine = Engine(load_rules(), store, published.append, 60, 0, clock=lambda: t[0], escalation=esc)
    engine.handle(Telemetry(reg["G-000001"], int(t[0] * 1000), None, {"lel_pct": 40.0}))
    t[0] += 121
    engine.tick()
    steps = [s for s in store.timeline(published[0].alert_id) if s.event == "escalated"]
    assert len(steps) == 1 and steps[0].data["tier"] == 2 and steps[0].data["to"] == ["车城路街道指挥中心值班长"]
    store.close()
