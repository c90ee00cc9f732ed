"""Acknowledge and resolve by hand, for both the /api and the console buttons.

The store decides (it refuses to touch a resolved alert); the new state is then published on MQTT
(contract §4) through one long-lived client, so on-call tools hear of a hand-made change too.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alerts.store import AlertStore
from core.contract import Alert
from core.settings import Settings
from core.timebase import now_iso
from dashboard.security import audit_action

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """`alert` on success; else `status` (404 unknown, 409 already resolved) and `error`."""

    alert: Alert | None
    status: int
    error: str | None = None


class Publisher:
    """A lazily connected paho client; a broker that is down only delays the message (QoS 1 queue)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()

    def publish(self, alert: Alert) -> bool:
        from alerts.publisher import publish_alert
        from core.mqtt import connect, make_client

        try:
            with self._lock:
                if self._client is None:
                    client = make_client(self.settings, client_id=f"sc-dashboard-{int(time.time() * 1000) % 10**9}")
                    connect(client, self.settings, wait_s=2.0)
                    self._client = client
                info = publish_alert(self._client, alert)
            return bool(info.rc == 0)
        except Exception:
            log.exception("could not publish alert %s", alert.alert_id)
            return False

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.disconnect()
                self._client.loop_stop()
                self._client = None


class AlertActions:
    def __init__(self, store: AlertStore, publisher: Publisher) -> None:
        self.store = store
        self.publisher = publisher

    def _refused(self, alert_id: str) -> Outcome:
        cur = self.store.get(alert_id)
        if cur is None:
            return Outcome(None, 404, f"no alert {alert_id}")
        return Outcome(cur, 409, f"alert {alert_id} is already {cur.state}")

    def acknowledge(self, alert_id: str, by: str, note: str | None) -> Outcome:
        alert = self.store.acknowledge(alert_id, by, note, now_iso())
        out = self._refused(alert_id) if alert is None else Outcome(alert, 200)
        audit_action("alert.acknowledge", alert_id, "ok" if out.status == 200 else "refused", out.status,
                     by=by, note=note, error=out.error)
        if alert is None:
            return out
        self.publisher.publish(alert)
        log.info("alert %s acknowledged by %s", alert_id, by)
        return out

    def resolve(self, alert_id: str, by: str | None, note: str | None) -> Outcome:
        alert = self.store.resolve(alert_id, now_iso(), note=note, by=by)
        out = self._refused(alert_id) if alert is None else Outcome(alert, 200)
        audit_action("alert.resolve", alert_id, "ok" if out.status == 200 else "refused", out.status,
                     by=by, note=note, error=out.error)
        if alert is None:
            return out
        self.publisher.publish(alert)
        log.info("alert %s resolved by hand (%s)", alert_id, by or "unknown")
        return out
