"""The live picture in this process's memory, so a refresh never waits on the database.

`LiveState` holds the open alerts, the alerts resolved in the last few minutes and the devices
whose last status said offline. Three feeds keep it current:

- MQTT: `sc/alerts/#` (every raise / update / acknowledgement / resolution the engine or another
  console publishes) and the retained `sc/+/+/+/status` (devices online / offline);
- the alert store's change feed (`last_seq`, numbered writes of alert rows, alerts/store.py): polled
  (one indexed read); only when it moved is the open set re-read — so an engine that cannot reach
  the broker still shows up;
- this process's own actions (`apply`), so the person who clicked sees the new state at once.

Each change bumps `version`. `view()` returns the joined picture (`Live`) for the current version,
computed once per version; `device_diff(old_version)` names the device colours that changed since
the version a browser last saw, so a refresh sends only those.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from alerts.store import open_store
from core.contract import Alert, AlertState, Device
from core.settings import Settings
from core.staff import Scope
from core.timebase import iso
from dashboard.geo import BaseLayers, MapData
from dashboard.live import Live, compute_live
from dashboard.scope import alert_in, scoped_layers, scoped_registry

log = logging.getLogger(__name__)

OPEN = (str(AlertState.ACTIVE), str(AlertState.ACKNOWLEDGED))
RESOLVED_SHOW_S = 15 * 60  # resolved alerts stay on the map, faded, this long
POLL_S = 0.2
VIEWS_KEPT = 64  # a browser further behind than this gets whole arrays


@dataclass
class Feeds:
    """What fed the state, for /api/health-like diagnostics and the tests."""

    mqtt_connected: bool = False
    mqtt_alerts: int = 0
    mqtt_status: int = 0
    store_reloads: int = 0
    applied: int = 0
    errors: list[str] = field(default_factory=list)


def _newer(a: Alert, b: Alert | None) -> bool:
    """True when `a` is at least as new as `b` (ISO-8601 UTC text compares in time order)."""
    if b is None:
        return True
    if (a.reopened or 0) != (b.reopened or 0):  # a reopening (复燃) comes after the close it undid
        return (a.reopened or 0) > (b.reopened or 0)
    if a.state == AlertState.RESOLVED and b.state != AlertState.RESOLVED:
        return True  # a resolution is final, whatever the clocks say
    if b.state == AlertState.RESOLVED and a.state != AlertState.RESOLVED:
        return False
    return (a.updated_at or "") >= (b.updated_at or "")


class LiveState:
    def __init__(self, settings: Settings, mapdata: MapData, *, mqtt: bool = True,
                 resolved_show_s: float = RESOLVED_SHOW_S) -> None:
        self.settings = settings
        self.mapdata = mapdata
        self.resolved_show_s = resolved_show_s
        self.feeds = Feeds()
        self._lock = threading.RLock()
        self._alerts: dict[str, Alert] = {}
        self._offline: dict[str, float] = {}  # device_id -> when its offline status arrived
        # Versions count from this process's start time in microseconds, not from 0: behind a balancer a
        # browser moved from one instance to another must never take the other's version for its own
        # (it would be told nothing changed). Below 2**53, exact in a browser's numbers.
        self._version = time.time_ns() // 1000
        self._views: OrderedDict[tuple[int, str, str], Live] = OrderedDict()
        self._listeners: list[Callable[[], None]] = []
        self._store = open_store(settings)  # creates/migrates the store (SC_STORE_URL); our reader
        self._seq = -1  # the store's change feed, as far as it was read
        self._dirty = False
        self._stop = threading.Event()
        self._client: Any = None
        self.reload()
        self._thread = threading.Thread(target=self._poll, name="sc-live-poll", daemon=True)
        self._thread.start()
        if mqtt:
            self._start_mqtt()

    # -- reading -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    def alerts(self) -> list[Alert]:
        with self._lock:
            return list(self._alerts.values())

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            return self._alerts.get(alert_id)

    def offline(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._offline)

    def view(self, scope: Scope | None = None) -> tuple[BaseLayers, Mapping[str, Device], Live]:
        """(static layers, registry, the live picture), the latter computed once per change; with a
        `scope`, as a person of that scope sees them (dashboard/scope.py)."""
        base = scoped_layers(self.mapdata.layers(), scope)
        reg = scoped_registry(self.mapdata.registry(), scope)
        reg_version = str(getattr(reg, "version", "none"))
        with self._lock:
            key = (self._version, reg_version, base.key)  # a scope is in both versions' names
            live = self._views.get(key)
            if live is None:
                now = time.time()
                cutoff = iso(now - self.resolved_show_s)
                seen = [a for a in self._alerts.values() if alert_in(scope, a)]
                open_ = [a for a in seen if a.state in OPEN]
                resolved = [a for a in seen
                            if a.state == AlertState.RESOLVED and (a.resolved_at or a.updated_at or "") >= cutoff]
                offline = frozenset(self._offline) if scope is None else frozenset(d for d in self._offline if d in reg)
                live = compute_live(open_, base, reg, reg_version, offline=offline,
                                    resolved=resolved, version=self._version)
                self._views[key] = live
                while len(self._views) > VIEWS_KEPT:
                    self._views.popitem(last=False)
        return base, reg, live

    def warm(self) -> None:
        """Compute the new picture here, in the feed's thread, so no browser's refresh pays for it."""
        try:
            self.view()
        except Exception:
            log.exception("live view not computed")

    def past_view(self, version: int, reg_version: str, base_key: str) -> Live | None:
        with self._lock:
            return self._views.get((version, reg_version, base_key))

    # -- writing -------------------------------------------------------------------------------
    def on_change(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def _bump(self) -> None:
        self._version += 1
        for fn in self._listeners:
            try:
                fn()
            except Exception:
                log.exception("live-state listener failed")

    def apply(self, alert: Alert) -> bool:
        """Take one alert's new state (from an action, MQTT or the store). True when it changed."""
        with self._lock:
            cur = self._alerts.get(alert.alert_id)
            if cur == alert or not _newer(alert, cur):
                return False
            self._alerts[alert.alert_id] = alert
            self.feeds.applied += 1
            self._bump()
            return True

    def set_status(self, device_id: str, online: bool) -> bool:
        with self._lock:
            was = device_id in self._offline
            if online == (not was):
                return False
            if online:
                del self._offline[device_id]
            else:
                self._offline[device_id] = time.time()
            self._bump()
            return True

    def reload(self) -> None:
        """Re-read the open alerts and the recently resolved ones from the store."""
        cutoff = iso(time.time() - self.resolved_show_s)
        try:
            rows = self._store.list(state=",".join(OPEN), limit=100_000)
            rows += self._store.list(state=str(AlertState.RESOLVED), updated_since=cutoff, limit=5000)
        except Exception as exc:  # the store's own error, whichever backend: shown stale, tried again
            log.warning("alert store not readable: %s", exc)
            return
        fresh = {a.alert_id: a for a in rows}
        with self._lock:
            merged: dict[str, Alert] = {}
            for aid, a in fresh.items():
                cur = self._alerts.get(aid)
                merged[aid] = cur if cur is not None and cur != a and _newer(cur, a) else a
            for aid, cur in self._alerts.items():  # heard on MQTT but not yet committed where we read
                # ... open, or resolved in the last minutes (it stays on the map, faded, like the others;
                # dropping it here lost a resolution heard on MQTT whenever a reload came before the commit)
                if aid not in merged and (cur.updated_at or "") >= cutoff:
                    merged[aid] = cur
            changed = merged != self._alerts
            self._alerts = merged
            self.feeds.store_reloads += 1
            if changed:
                self._bump()

    def _poll(self) -> None:
        last_prune = time.monotonic()
        while not self._stop.wait(POLL_S):
            try:
                seq = self._store.last_seq()
            except Exception as exc:  # a store busy or gone for a moment: the next poll tries again
                log.warning("alert store change feed failed: %s", exc)
                continue
            if seq != self._seq:
                self._seq = seq
                self.reload()
                self._dirty = True
            if self._dirty:
                self._dirty = False
                self.warm()
            elif time.monotonic() - last_prune > 30:  # faded alerts leave the map when their time is up
                last_prune = time.monotonic()
                self.reload()

    # -- MQTT ----------------------------------------------------------------------------------
    def _start_mqtt(self) -> None:
        from core.accounts import MQTT_DASHBOARD_LIVE
        from core.mqtt import follow_standbys, make_client

        try:
            # Its own account when security is on: svc.dashboard-live only reads.
            client = make_client(self.settings, client_id=f"sc-dash-live-{uuid.uuid4().hex[:8]}",
                                 account=MQTT_DASHBOARD_LIVE if self.settings.secure else None)
        except Exception as exc:
            self.feeds.errors.append(f"mqtt client: {exc}")
            log.warning("live feed: no MQTT client (%s); the alert store alone feeds the map", exc)
            return
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 10)
        url = self.settings.mqtt_endpoint  # the TLS listener when security is on
        try:
            follow_standbys(client, self.settings)
            client.connect_async(url.host, url.port, keepalive=self.settings.mqtt_keepalive_s)
            client.loop_start()
        except Exception as exc:
            self.feeds.errors.append(f"mqtt connect: {exc}")
            log.warning("live feed: MQTT not reachable (%s); retrying in the background", exc)
        self._client = client

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            return
        self.feeds.mqtt_connected = True
        client.subscribe([("sc/alerts/#", 1), ("sc/+/+/+/status", 1)])

    def _on_disconnect(self, *_a: Any) -> None:
        self.feeds.mqtt_connected = False

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            if not msg.payload:
                return  # a cleared retained copy
            parts = msg.topic.split("/")
            doc = orjson.loads(msg.payload)
            changed = False
            if parts[1] == "alerts":
                if isinstance(doc, dict) and doc.get("alert_id"):
                    self.feeds.mqtt_alerts += 1
                    changed = self.apply(Alert.from_json(doc))
            elif len(parts) == 5 and parts[4] == "status" and isinstance(doc, dict):
                self.feeds.mqtt_status += 1
                changed = self.set_status(parts[3], doc.get("state") != "offline")
            if changed:
                self._dirty = True  # the poll thread computes the new picture (once, however many arrived)
        except Exception as exc:  # garbage on the bus must not stop the feed
            log.debug("live feed: ignored %s: %s", msg.topic, exc)

    def close(self) -> None:
        self._stop.set()
        if self._client is not None:
            try:
                self._client.disconnect()
                self._client.loop_stop()
            except Exception:
                pass
        self._thread.join(timeout=2)
        self._store.close()
