"""The alert service: subscribes to device messages, validates them, feeds the engine.

paho's network thread only enqueues; one engine thread does all rule work, so the engine needs
no locks. Its subscription is a persistent QoS 1 session of its own, apart from ingest's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from alerts.channels import load_targets
from alerts.configfile import Watched
from alerts.context import Surroundings
from alerts.delivery import Delivery, RetryPolicy
from alerts.dispatch import DispatchBook
from alerts.engine import Engine
from alerts.message import Places, warm_up
from alerts.notify import Escalation, Notifier
from alerts.publisher import publish_alert
from alerts.roster import BUNDLED_ROSTER, parse_roster
from alerts.rules import load_rules
from alerts.store import AlertStore, store_path
from core import heartbeat
from core.contract import TOPIC_ROOT
from core.mqtt import connect, make_client
from core.registry import RegistryWatcher, ensure_registry
from core.settings import Settings
from core.timebase import iso
from core.validation import Rejected, validate

log = logging.getLogger(__name__)

SUBSCRIPTIONS = [(f"{TOPIC_ROOT}/+/+/+/{t}", 1) for t in ("telemetry", "status", "event")]
SILENCE_CHECK_S = 5.0


class AlertService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ensure_registry(settings)
        self.registry = RegistryWatcher(settings.registry_path, settings.registry_poll_s)
        self.store = AlertStore(store_path(settings.data_path))
        rules_path = Path(settings.alerts_rules_file) if settings.alerts_rules_file else None
        self.client = make_client(settings, client_id=settings.alerts_client_id, persistent=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._feed_restored = threading.Event()
        # Roster and channels: a file with errors is refused here (ConfigError: file, line, reason);
        # edited while running, a bad version is logged and the running one stays.
        self.roster = Watched(Path(settings.alerts_roster_file) if settings.alerts_roster_file else BUNDLED_ROSTER,
                              parse_roster)
        self.channels = (Watched(Path(settings.alerts_channels_file), lambda _p: load_targets(settings))
                         if settings.alerts_channels_file else None)
        self.delivery = Delivery(
            settings.data_path, self.channels.value if self.channels else load_targets(settings),
            record_many=self._record_many, timeout_s=settings.notify_timeout_s, public_url=settings.public_base_url,
            policy=RetryPolicy(settings.notify_retry_first_s, settings.notify_retry_max_s, settings.notify_give_up_s),
        )
        notifier = Notifier(self.delivery.outbox, Places(lambda d: self.registry.current().get(d)),
                            settings.public_base_url, record=self._record)
        threading.Thread(target=warm_up, name="notify-warm-up", daemon=True).start()
        self.dispatches = DispatchBook(self.store, settings)
        self.engine = Engine(
            load_rules(rules_path), self.store, self._publish, settings.alert_holdoff_s,
            settings.alerts_update_min_s,
            surroundings=Surroundings(settings.alerts_nearby_radius_m).around,
            escalation=Escalation(self.roster.current, notifier),
        )
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=200_000)
        self.counters = {"received": 0, "invalid": 0, "published": 0}
        self.mqtt_ok = False
        self._stop = threading.Event()

    def _record(self, alert_id: str, event: str, data: dict[str, object]) -> None:
        self.store.record(alert_id, event, iso(time.time()), by="system", data=data)

    def _record_many(self, steps: list[tuple[str, str, str, dict[str, object]]]) -> None:
        self.store.record_many([(a, e, at, "system", None, d) for a, e, at, d in steps])

    def _reload_channels(self) -> None:
        self.delivery.start()  # idempotent: new targets, or taking over from another process that ended
        if self.channels is None:
            return
        before = self.channels.value
        targets = self.channels.current()
        if targets is not before:
            self.delivery.configure(targets)
            self.delivery.start()

    def _publish(self, alert) -> None:  # type: ignore[no-untyped-def]
        publish_alert(self.client, alert)
        self.counters["published"] += 1

    def _on_connect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        if not rc.is_failure:
            self.mqtt_ok = True
            self._feed_restored.set()
            client.subscribe(SUBSCRIPTIONS)

    def _on_disconnect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        self.mqtt_ok = False
        if not self._stop.is_set():
            log.warning("lost the broker (%s): silence checks paused until it is back", rc)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        self.inbox.put((msg.topic, bytes(msg.payload)))

    def step(self, timeout_s: float) -> None:
        """Drain the inbox for up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                topic, payload = self.inbox.get(timeout=left)
            except queue.Empty:
                return
            self.counters["received"] += 1
            try:
                rec = validate(topic, payload, self.registry.current(), int(time.time() * 1000))
            except Rejected:
                self.counters["invalid"] += 1  # ingest dead-letters it; nothing to evaluate
                continue
            self.engine.handle(rec)

    def run_forever(self) -> None:
        self.delivery.start()
        connect(self.client, self.settings, persistent=True)
        last_silence = last_beat = last_compact = last_dispatch_check = time.monotonic()
        try:
            while not self._stop.is_set():
                self.step(self.settings.alerts_tick_s)
                self.engine.tick()
                now = time.monotonic()
                if self._feed_restored.is_set():
                    self._feed_restored.clear()
                    self.engine.feed_restored()
                if self.mqtt_ok and now - last_silence >= SILENCE_CHECK_S:
                    self.engine.check_silence(self.registry.current())
                    last_silence = now
                if now - last_dispatch_check >= SILENCE_CHECK_S:
                    self.check_dispatches()
                    last_dispatch_check = now
                if now - last_beat >= 1.0:
                    self._reload_channels()
                    if now - last_compact >= 60.0:
                        self.delivery.compact()
                        last_compact = now
                    heartbeat.write(self.settings.data_path, "alerts", self.snapshot())
                    last_beat = now
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.delivery.stop()
            self.store.close()

    def check_dispatches(self) -> None:
        """A dispatch nobody accepted by its deadline escalates (alerts/dispatch.py)."""
        try:
            self.dispatches.escalate_overdue(self.roster.current(), time.time())
        except Exception:  # a store hiccup must not stop the rule engine
            log.exception("could not check dispatch deadlines")

    def snapshot(self) -> dict[str, object]:
        return {"counters": dict(self.counters), "open_alerts": len(self.engine.open),
                "queue": self.inbox.qsize(), "mqtt": "ok" if self.mqtt_ok else "down",
                "notify": self.delivery.snapshot(),
                "config_errors": [w.error for w in (self.roster, self.channels) if w is not None and w.error]}

    def stop(self) -> None:
        self._stop.set()
