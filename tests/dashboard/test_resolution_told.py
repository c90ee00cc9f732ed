"""The resolution reaches everyone who was told: an alert escalated to tier 2 and then resolved by a
person through the dashboard's actions (a command to the real alert service, on the real broker)
sends its resolution to every person the raise and the escalation reached."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from alerts.command import Command
from alerts.command.client import send
from alerts.notify import load_roster
from alerts.store import AlertStore, store_path
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from dashboard.actions import AlertActions
from tests.conftest import RunningAlerts, feed, wait_until

ROSTER = Path(__file__).resolve().parents[2] / "alerts" / "oncall.yaml"


def outbox(settings: Settings, alert_id: str) -> list[dict[str, Any]]:
    path = settings.data_path / "alerts" / "outbox.jsonl"
    if not path.exists():
        return []
    return [e for e in map(orjson.loads, path.read_bytes().splitlines()) if e.get("alert_id") == alert_id]


def names(entries: list[dict[str, Any]]) -> set[str]:
    return {p["name"] for e in entries for p in e["to"]}


def test_a_hand_resolution_reaches_everyone_told(settings: Settings, tmp_path: Path) -> None:
    roster = tmp_path / "oncall.yaml"  # the bundled roster, red escalating after 3 s instead of 120
    roster.write_text(ROSTER.read_text(encoding="utf-8").replace("  red: 120", "  red: 3", 1), encoding="utf-8")
    s = replace(settings, alerts_roster_file=str(roster))
    assert load_roster(roster).escalate_after_s["red"] == 3
    dev = next(d for d in load_registry(ensure_registry(s)).values() if d.kind == "gas" and d.community == "yanhu")
    with RunningAlerts(s) as svc:
        feed(svc, dev, {"lel_pct": 45.0})  # as ingest hands on a reading it accepted
        alert = wait_until(lambda: next((a for a in svc.engine.open.values() if a.device_id == dev.device_id), None),
                           timeout=15)
        assert alert is not None and alert.severity == "red"
        aid = alert.alert_id
        assert wait_until(lambda: any(e["event"] == "escalated" and e["tier"] == 2 for e in outbox(s, aid)), 15), \
            outbox(s, aid)
        # Acknowledged at tier 2 (no tier 3), then closed by hand over the live reading, with a reason.
        assert send(s, Command("ack", {"alert_id": aid}, "值班员张三", "console")).status == 200
        store = AlertStore(store_path(s.data_path))
        try:
            out = AlertActions(store, s).resolve(aid, "值班员张三", "燃气公司已关阀", override=True, via="console")
        finally:
            store.close()
        assert out.status == 200, out.error
        told = names([e for e in outbox(s, aid) if e["event"] in ("raised", "escalated", "reminder")])
        assert {"艳湖社区值班员", "车城路街道指挥中心值班长"} <= told
        assert wait_until(lambda: [e for e in outbox(s, aid) if e["event"] == "resolved"], 10)
        resolved = [e for e in outbox(s, aid) if e["event"] == "resolved"]
        assert len(resolved) == 1 and told <= names(resolved), (told, resolved)
        assert "解除" in resolved[0]["text"]
