"""Patrols through the real alert service on the real broker: a plan whose round ended undone is
published on sc/alerts as a blue alert, a check-in too far away is refused and changes nothing, and the
check-ins that complete the round resolve it (published too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import orjson

from alerts.command import Command
from alerts.command.client import send
from core.contract import ALERT_TOPIC_ROOT
from core.settings import Settings
from core.timebase import beijing
from tests.conftest import Collector, RunningAlerts


def test_a_missed_patrol_is_published_and_a_check_in_resolves_it(settings: Settings,
                                                                 collector: Callable[[str], Collector]) -> None:
    yesterday = (beijing().date() - timedelta(days=1)).isoformat()  # its round (a Beijing day) ended undone
    plans = settings.data_path.parent / "patrols.yaml"
    plans.parent.mkdir(parents=True, exist_ok=True)
    plans.write_text(f"""plans:
  - id: p1
    name: 艳湖路燃气管巡检
    community: yanhu
    segment: 艳湖路中压燃气管一段
    who: {{person: yh_duty}}
    every: 1d
    start: {yesterday}
    checkpoints:
      - {{name: 北口阀井, lon: 110.7905, lat: 32.6421, tolerance_m: 30}}
""", encoding="utf-8")
    s = replace(settings, patrols_file=str(plans), alerts_silence_check_s=0.2)
    sub = collector(f"{ALERT_TOPIC_ROOT}/yanhu/#")

    def of_rule(state: str) -> Callable[[list[tuple[str, bytes, bool]]], bool]:
        return lambda ms: any(p and (a := orjson.loads(p))["rule"] == "patrol_missed" and a["state"] == state
                              for _, p, _ in ms)

    with RunningAlerts(s) as svc:
        assert sub.wait_for(of_rule("active"), 10), "no patrol alert on sc/alerts"
        raised = [a for a in sub.json() if a["rule"] == "patrol_missed"][-1]
        assert raised["severity"] == "blue" and raised["value"] == 1 and "艳湖路燃气管巡检" in raised["message"]
        far = send(s, Command("patrol_checkin", {"plan_id": "p1", "checkpoint": "北口阀井", "lon": 110.7935,
                                                 "lat": 32.6421}, "艳湖社区值班员", "api"))
        assert far.status == 409 and "超出允许的 30 米" in far.body["error"]
        assert svc.store.checkins("2000-01-01T00:00:00Z") == []
        ok = send(s, Command("patrol_checkin", {"plan_id": "p1", "checkpoint": "北口阀井", "lon": 110.7905,
                                                "lat": 32.6422}, "艳湖社区值班员", "api"))
        assert ok.status == 201 and ok.body["checkin"]["distance_m"] < 30
        assert sub.wait_for(of_rule("resolved"), 10), "the check-in did not resolve the patrol alert"
        assert ("patrol_missed", "p1") not in svc.engine.open
