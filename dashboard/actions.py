"""Acknowledge and resolve by hand, for both the /api and the console buttons.

A resolve goes through the close guard (alerts/guard.py: not while the danger is still measured,
unless overridden with a reason); the store decides the rest (it refuses to touch a resolved alert);
the new state is then published on MQTT
(contract §4) through one long-lived client, so on-call tools hear of a hand-made change too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alerts.guard import Closed, Live, Policy, danger
from alerts.guard import resolve as guard_resolve
from alerts.store import AlertStore
from core.contract import Alert
from core.settings import Settings
from core.timebase import now_iso
from dashboard.security import audit_action

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)


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
    def __init__(self, store: AlertStore, publisher: Publisher, policy: Policy | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.policy = policy or Policy.of(publisher.settings)
        # Told of every change made here, before it is published: the dashboard's live state, so that
        # every open page (an /api call's too) shows it on its next tick, not after the MQTT round trip.
        self.listeners: list[Callable[[Alert], Any]] = []

    def _changed(self, alert: Alert) -> None:
        for fn in self.listeners:
            try:
                fn(alert)
            except Exception:
                log.exception("alert action listener failed")

    def _refused(self, alert_id: str) -> Closed:
        cur = self.store.get(alert_id)
        if cur is None:
            return Closed(None, 404, f"no alert {alert_id}")
        return Closed(cur, 409, f"alert {alert_id} is already {cur.state}")

    def acknowledge(self, alert_id: str, by: str, note: str | None) -> Closed:
        alert = self.store.acknowledge(alert_id, by, note, now_iso())
        out = self._refused(alert_id) if alert is None else Closed(alert, 200)
        audit_action("alert.acknowledge", alert_id, "ok" if out.status == 200 else "refused", out.status,
                     by=by, note=note, error=out.error)
        if alert is None:
            return out
        self._changed(alert)
        self.publisher.publish(alert)
        log.info("alert %s acknowledged by %s", alert_id, by)
        return out

    def live(self, alert_id: str) -> Live | None:
        """The reading that would refuse a close now (for the confirm dialogs), or None."""
        a = self.store.get(alert_id)
        return danger(self.store, a, self.policy) if a is not None and a.state != "resolved" else None

    def resolve(self, alert_id: str, by: str | None, note: str | None, override: bool = False) -> Closed:
        """Resolve by hand through the close guard (alerts/guard.py): refused while the danger is measured,
        unless `override` with a reason in `note`."""
        done = guard_resolve(self.store, self.policy, alert_id, by, note, override=override)
        out = done
        audit_action("alert.resolve", alert_id, "ok" if out.status == 200 else "refused", out.status, by=by,
                     note=note, error=out.error, override=bool(override and done.live is not None),
                     live_value=done.live.value if done.live is not None else None)
        if out.status != 200 or out.alert is None:
            return out
        self._changed(out.alert)
        self.publisher.publish(out.alert)
        log.info("alert %s resolved by hand (%s)%s", alert_id, by or "unknown", " OVERRIDE" if done.live else "")
        return out
