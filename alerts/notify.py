"""Telling on-call staff: who (the roster), when (raise, escalation, resolution) and how.

Every notification is appended to `SC_DATA_DIR/alerts/outbox.jsonl` (the durable record an SMS
or voice gateway consumes) and, when `SC_ALERTS_WEBHOOK_URL` is set, POSTed there by a
background thread with retries, so a slow gateway never holds up the rule engine.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
import yaml

from core.contract import Alert
from core.severity import label as severity_label
from core.timebase import epoch

log = logging.getLogger(__name__)

BUNDLED_ROSTER = Path(__file__).with_name("oncall.yaml")


@dataclass(frozen=True)
class Roster:
    tiers: dict[str, list[list[dict[str, str]]]]
    escalate_after_s: dict[str, float]

    def contacts(self, community: str, tier: int) -> list[dict[str, str]]:
        chain = self.tiers.get(community, []) + self.tiers.get("*", [])
        return chain[tier - 1] if 0 < tier <= len(chain) else []

    def max_tier(self, community: str) -> int:
        return len(self.tiers.get(community, []) + self.tiers.get("*", []))


def load_roster(path: Path | None = None) -> Roster:
    p = path or BUNDLED_ROSTER
    doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    tiers = doc.get("tiers") or {}
    if not isinstance(tiers, dict) or not all(isinstance(v, list) for v in tiers.values()):
        raise ValueError(f"{p}: `tiers` must map a community (or '*') to a list of tiers")
    esc = {str(k): float(v) for k, v in (doc.get("escalate_after_s") or {}).items()}
    return Roster(tiers, esc)


class Notifier:
    def __init__(self, outbox: Path, webhook_url: str | None = None, retries: int = 5) -> None:
        outbox.parent.mkdir(parents=True, exist_ok=True)
        self.outbox = outbox
        self.webhook_url = webhook_url
        self.retries = retries
        self.failed = 0
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        if webhook_url:
            threading.Thread(target=self._send_loop, name="notify-webhook", daemon=True).start()

    def notify(self, alert: Alert, event: str, tier: int, contacts: list[dict[str, str]]) -> dict[str, Any]:
        note = {
            "at": time.time(), "event": event, "tier": tier, "to": contacts,
            "alert_id": alert.alert_id, "severity": alert.severity, "state": alert.state,
            "community": alert.community, "compound_id": alert.compound_id,
            "text": f"[{severity_label(alert.severity)}预警] {alert.message}"
                    f" ({alert.community}/{alert.compound_id}, {alert.device_id})",
        }
        with self.outbox.open("ab") as fh:
            fh.write(orjson.dumps(note) + b"\n")
        if self.webhook_url:
            self._q.put(note)
        return note

    def _send_loop(self) -> None:
        session = requests.Session()
        while True:
            note = self._q.get()
            delay = 1.0
            for attempt in range(self.retries):
                try:
                    r = session.post(self.webhook_url or "", json=note, timeout=5)
                    if r.status_code < 300:
                        break
                    err = f"HTTP {r.status_code}"
                except requests.RequestException as exc:
                    err = str(exc)
                log.warning("webhook attempt %d for %s failed: %s", attempt + 1, note["alert_id"], err)
                time.sleep(delay)
                delay = min(delay * 2, 30)
            else:
                self.failed += 1
                log.error("could not deliver the notification for %s; it stays in %s",
                          note["alert_id"], self.outbox)


class Escalation:
    """Tier 1 is told when an alert is raised; while nobody acknowledges it, the next tier is
    told every `escalate_after_s[severity]`; everyone told hears of the resolution."""

    def __init__(self, roster: Roster, notifier: Notifier) -> None:
        self.roster = roster
        self.notifier = notifier

    def raised(self, alert: Alert) -> None:
        self.notifier.notify(alert, "raised", 1, self.roster.contacts(alert.community, 1))

    def due_tier(self, alert: Alert, now: float) -> int | None:
        """The tier to escalate to now, or None."""
        after = self.roster.escalate_after_s.get(alert.severity)
        tier = alert.escalation_tier or 1
        if after is None or alert.state != "active" or tier >= self.roster.max_tier(alert.community):
            return None
        return tier + 1 if now - epoch(alert.started_at) >= after * tier else None

    def escalated(self, alert: Alert) -> None:
        tier = alert.escalation_tier or 1
        self.notifier.notify(alert, "escalated", tier, self.roster.contacts(alert.community, tier))

    def resolved(self, alert: Alert) -> None:
        told = [c for t in range(1, (alert.escalation_tier or 1) + 1)
                for c in self.roster.contacts(alert.community, t)]
        self.notifier.notify(alert, "resolved", alert.escalation_tier or 1, told)
