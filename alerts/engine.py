"""The rule engine: records in, alert state changes out.

One condition on one subject (a device) is one alert: while it is unresolved, the condition
holding again updates it. It resolves by itself only after the condition has stayed clear for
the hold-off time, so a value wobbling around a threshold does not flap. `for_s` is measured in
device time (payload ts); hold-off and silence in wall time, which keeps running when a device
stops talking. The engine is single-threaded: the service feeds it from one queue.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.context import summary
from alerts.notify import Escalation
from alerts.rules import Rule
from alerts.store import AlertStore, AlreadyOpen
from core.contract import KINDS, Alert, AlertState, Device
from core.timebase import iso
from core.validation import Record, Status

log = logging.getLogger(__name__)

Publish = Callable[[Alert], None]
Surround = Callable[[float, float], dict[str, Any]]
# Only the serious alerts carry their surroundings: a dispatcher needs them, and a burst of
# blue silence alerts should not cost a spatial query each.
SURROUNDED = frozenset({"red", "orange"})


def with_surroundings(message: str, nearby: dict[str, Any] | None) -> str:
    line = summary(nearby) if nearby else ""
    return f"{message}; {line}" if line else message


def new_alert_id() -> str:
    return "a-" + uuid.uuid4().hex[:16]


@dataclass
class Condition:
    """What the engine knows of one (rule, device)."""

    true_since_ts: int | None = None  # device time the condition became true (for for_s)
    clear_since: float | None = None  # wall time it last became clear, while an alert is open
    last_published: float = 0.0


class Engine:
    def __init__(
        self,
        rules: list[Rule],
        store: AlertStore,
        publish: Publish,
        holdoff_s: float,
        update_min_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        surroundings: Surround | None = None,
        escalation: Escalation | None = None,
    ) -> None:
        self.rules = rules
        # Per kind, every message rule that applies to it (its own and the kind-less ones), built
        # once: the lookup on each message allocates nothing and never misses a kind.
        self.by_kind: dict[str, list[Rule]] = {
            k: [r for r in rules if r.silent_factor is None and r.kind in (k, None)] for k in KINDS
        }
        self.silent_rules = [r for r in rules if r.silent_factor is not None]
        self.store = store
        self.publish = publish
        self.holdoff_s = holdoff_s
        self.update_min_s = update_min_s
        self.clock = clock
        self.surroundings = surroundings
        self.escalation = escalation
        self.conditions: dict[tuple[str, str], Condition] = {}
        self.open: dict[tuple[str, str], Alert] = {}
        self.last_seen: dict[str, float] = {}
        self.started = clock()
        # Silence is measured from when our own feed was last restored: a broker outage is not
        # thousands of silent devices.
        self.feed_since = self.started
        self.resync()
        # After a restart nothing is known of the conditions: count them clear from now, so an
        # alert whose device no longer confirms it resolves after the hold-off.
        for key in self.open:
            self.conditions[key] = Condition(clear_since=self.started)

    # -- input ------------------------------------------------------------------------------
    def handle(self, rec: Record) -> None:
        now = self.clock()
        dev = rec.device
        # An `offline` status (often the broker delivering the device's last will) is not the
        # device talking: it must not end, or restart, a silence.
        if not (isinstance(rec, Status) and rec.state != "online"):
            self.last_seen[dev.device_id] = now
            for rule in self.silent_rules:
                self._clear((rule.name, dev.device_id), now)
        for rule in self.by_kind[dev.kind]:
            cond, value = rule.check(rec)
            if cond is None:
                continue
            key = (rule.name, dev.device_id)
            if not cond:
                c = self.conditions.get(key)
                if c is not None:
                    c.true_since_ts = None
                self._clear(key, now)
                continue
            c = self.conditions.setdefault(key, Condition())
            if c.true_since_ts is None:
                c.true_since_ts = rec.ts_ms
            if rule.for_s and rec.ts_ms - c.true_since_ts < rule.for_s * 1000:
                continue
            detail = getattr(rec, "detail", "")
            self._fire(rule, dev, value, now, rule.render(value=value, detail=detail))

    def tick(self) -> None:
        """Periodic work: pick up changes made by hand, silence, hold-off resolution."""
        now = self.clock()
        self.resync()
        for key, alert in list(self.open.items()):
            c = self.conditions.get(key)
            if c is not None and c.clear_since is not None and now - c.clear_since >= self.holdoff_s:
                self._resolve(key, alert, now)
            elif self.escalation is not None:
                tier = self.escalation.due_tier(alert, now)
                if tier is not None:
                    up = self.store.update(alert.alert_id, escalation_tier=tier, updated_at=iso(now))
                    if up is not None and up.state == "active":
                        self.open[key] = up
                        log.warning("escalated %s to tier %d: nobody acknowledged it", up.alert_id, tier)
                        self.publish(up)
                        self.escalation.escalated(up)

    def check_silence(self, registry: Mapping[str, Device]) -> None:
        now = self.clock()
        for rule in self.silent_rules:
            factor = float(rule.silent_factor or 3)
            for dev in registry.values():
                if rule.kind is not None and dev.kind != rule.kind:
                    continue
                limit = factor * dev.interval_s
                if (rule.name, dev.device_id) in self.open:
                    continue  # already raised; its value is the silence at raise time
                if any((r, dev.device_id) in self.open for r in rule.suppressed_by):
                    continue
                silent_s = now - max(self.last_seen.get(dev.device_id, self.started), self.feed_since)
                if silent_s >= limit:
                    msg = rule.render(value=round(silent_s), silent_s=silent_s, interval_s=dev.interval_s)
                    self._fire(rule, dev, round(silent_s, 1), now, msg, threshold=limit)

    def feed_restored(self) -> None:
        """Our subscription is back after an outage: restart every silence clock from now."""
        self.feed_since = self.clock()

    # -- state changes ----------------------------------------------------------------------
    def _fire(
        self, rule: Rule, dev: Device, value: object, now: float, message: str,
        threshold: object | None = None,
    ) -> None:
        key = (rule.name, dev.device_id)
        c = self.conditions.setdefault(key, Condition())
        c.clear_since = None
        thr = rule.threshold if threshold is None else threshold
        alert = self.open.get(key)
        if alert is None and any((r, dev.device_id) in self.open for r in rule.suppressed_by):
            return
        if alert is None:
            self._supersede(rule, dev.device_id, now)
            nearby = None
            if self.surroundings is not None and rule.severity in SURROUNDED:
                try:
                    nearby = self.surroundings(dev.lon, dev.lat)
                except Exception:  # an alert without context beats no alert
                    log.exception("no surroundings for %s", dev.device_id)
                message = with_surroundings(message, nearby)
            alert = Alert(
                alert_id=new_alert_id(), rule=rule.name, severity=rule.severity,
                state=str(AlertState.ACTIVE), community=dev.community, compound_id=dev.compound_id,
                device_id=dev.device_id, kind=dev.kind, metric=rule.metric, value=value,  # type: ignore[arg-type]
                threshold=thr, lon=dev.lon, lat=dev.lat,  # type: ignore[arg-type]
                started_at=iso(now), updated_at=iso(now), message=message, nearby=nearby,
                escalation_tier=1,
            )
            try:
                self.store.insert(alert, subject=dev.device_id)
            except AlreadyOpen:
                # Raised elsewhere (another engine instance): adopt it.
                self.resync()
                return
            self.open[key] = alert
            c.last_published = now
            log.info("raised %s %s on %s: %s", alert.alert_id, rule.name, dev.device_id, message)
            self.publish(alert)
            if self.escalation is not None:
                self.escalation.raised(alert)
            return
        if now - c.last_published < self.update_min_s:
            return
        message = with_surroundings(message, alert.nearby)
        updated = self.store.update(alert.alert_id, value=value, updated_at=iso(now), message=message)
        if updated is None:  # resolved by hand meanwhile: a condition still true raises anew
            self.open.pop(key, None)
            self._fire(rule, dev, value, now, message, threshold)
            return
        self.open[key] = updated
        c.last_published = now
        self.publish(updated)

    def _supersede(self, rule: Rule, device_id: str, now: float) -> None:
        """Close the open alerts this rule's alert makes redundant on the same device."""
        for other in self.rules:
            key = (other.name, device_id)
            if rule.name in other.suppressed_by and key in self.open:
                self._resolve(key, self.open[key], now, note=f"由 {rule.name} 取代 (superseded)")

    def _clear(self, key: tuple[str, str], now: float) -> None:
        if key in self.open:
            c = self.conditions.setdefault(key, Condition())
            if c.clear_since is None:
                c.clear_since = now

    def _resolve(self, key: tuple[str, str], alert: Alert, now: float, note: str | None = None) -> None:
        done = self.store.resolve(alert.alert_id, iso(now), note=note)
        self.open.pop(key, None)
        self.conditions.pop(key, None)
        if done is not None:
            log.info("resolved %s (%s on %s)", alert.alert_id, alert.rule, alert.device_id)
            self.publish(done)
            if self.escalation is not None:
                self.escalation.resolved(done)

    def resync(self) -> None:
        """Adopt the store's view: acknowledgements and resolutions made by hand."""
        fresh = self.store.open_alerts()
        for key in list(self.open):
            if key not in fresh:
                self.open.pop(key)
                self.conditions.pop(key, None)
        for key, alert in fresh.items():
            self.open[key] = alert
