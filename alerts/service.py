"""The alert service: subscribes to the records ingest accepted, feeds the engine.

Ingest validates every device message once and hands on what it accepted (ingest/forward.py): the
engine never sees a message ingest dead-lettered (invalid, or `rate_limited`), and does not validate
again. paho's network thread only enqueues; one engine thread does all rule work, so the engine
needs no locks. Its subscription is a persistent QoS 1 session of its own, apart from ingest's, so
records forwarded while it is down wait for it. `--communities` runs it over some communities only
(alerts/partition.py): its own session, its communities' records and alert copies, its share of
the store.

What survives a restart lives in the store (alerts, condition state, last-heard times, shelves);
on every (re)connect the retained copy of every open alert is published again from the store, and
the service also watches `sc/alerts/#`: a retained copy cleared by anyone while its alert is open
is put back, and a stale retained copy of an alert the store says is resolved is cleared.
The rules file is re-read when it changes; a bad file is refused (logged with file, line and
reason) and the running rules stay.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt

from alerts.audience import ScopeBook
from alerts.channels import load_targets
from alerts.command.handlers import Handlers
from alerts.command.server import CommandServer
from alerts.configfile import Watched
from alerts.context import Surroundings
from alerts.delivery import Delivery, RetryPolicy, open_outbox
from alerts.dispatch import DispatchBook
from alerts.engine import Engine
from alerts.flooding import FloodWatch
from alerts.holdover import held_snapshot, open_held, remember_from, retry_held
from alerts.lease import Lease
from alerts.message import Places, warm_up
from alerts.notify import Escalation, Notifier
from alerts.partition import PartitionRegistry, PartitionStore, suffix
from alerts.patrols import PatrolBook, Plans, load_plans, plans_path
from alerts.preferences import PreferenceBook
from alerts.publisher import publish_alert
from alerts.report import place_names
from alerts.roster import BUNDLED_ROSTER, parse_roster
from alerts.rules import BUNDLED_RULES, RuleError, RuleSet, load_ruleset
from core import heartbeat
from core.accounts import alerts_account
from core.contract import TOPIC_ROOT, AlertState, Device
from core.mqtt import connect, make_client
from core.registry import RegistryWatcher, ensure_registry
from core.settings import Settings
from core.staff import open_accounts
from core.timebase import iso
from ingest.fastmqtt import make_fast
from ingest.forward import RECORDS_ROOT, decode, records_topic

log = logging.getLogger(__name__)

ALERTS_TOPIC = f"{TOPIC_ROOT}/alerts/#"
# What an engine of an earlier version subscribed to in the same persistent session: dropped on connect.
DEVICE_TOPICS = [f"{TOPIC_ROOT}/+/+/+/{t}" for t in ("telemetry", "status", "event")]


def subscriptions(communities: frozenset[str] | None) -> list[tuple[str, int]]:
    """The forwarded records and alert copies of the engine's communities (all: None)."""
    if communities is None:
        return [(f"{RECORDS_ROOT}/+", 1), (ALERTS_TOPIC, 1)]
    return [(records_topic(c), 1) for c in sorted(communities)] + \
        [(f"{TOPIC_ROOT}/alerts/{c}/#", 1) for c in sorted(communities)]


SUBSCRIPTIONS = subscriptions(None)
SILENCE_CHECK_S = 5.0
_ALERT_PREFIX = f"{TOPIC_ROOT}/alerts/"
_WAKE = ("", b"")  # not a topic: a staff command is waiting
_RECORDS_PREFIX = f"{RECORDS_ROOT}/"


class RulesWatcher:
    """The rules file, re-read when its mtime/size changes; a bad file keeps the running rules."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ruleset = load_ruleset(path)  # a bad file at start is an error: refuse to start
        self._sig = self._signature()
        self._pending: tuple[float, int] | None = None
        self._pending_at = 0.0
        self.last_error: str | None = None

    def _signature(self) -> tuple[float, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    SETTLE_S = 0.5  # a file is read once it stopped changing: an editor's write is not atomic

    def poll(self) -> RuleSet | None:
        """A new rule set if the file changed (and then stayed unchanged for SETTLE_S) and is good."""
        sig = self._signature()
        if sig == self._sig:
            self._pending = None
            return None
        now = time.monotonic()
        if sig != self._pending:
            self._pending, self._pending_at = sig, now
            return None
        if now - self._pending_at < self.SETTLE_S:
            return None
        self._sig, self._pending = sig, None
        try:
            rs = load_ruleset(self.path)
        except RuleError as exc:
            self.last_error = str(exc)
            log.error("rules file refused, the running rules stay: %s", exc)
            return None
        self.last_error = None
        self.ruleset = rs
        log.info("rules reloaded from %s: %d rules, %d overrides", self.path, len(rs.rules), len(rs.overrides))
        return rs


class AlertService:
    def __init__(self, settings: Settings, communities: frozenset[str] | None = None) -> None:
        self.settings = settings
        self.communities = communities  # None: the whole street (alerts/partition.py)
        self.name = "alerts" + suffix(communities)
        ensure_registry(settings)
        watcher = RegistryWatcher(settings.registry_path, settings.registry_poll_s)
        self.registry = watcher if communities is None else PartitionRegistry(watcher, communities)
        # SC_STORE_URL: the SQLite file (on a full disk it keeps what it cannot write in memory,
        # alerts/holdover.py) or PostgreSQL.
        self.store = open_held(settings)
        self.rules = RulesWatcher(Path(settings.alerts_rules_file) if settings.alerts_rules_file else BUNDLED_RULES)
        # The buffered, lean-decoding client ingest uses: the engine must keep up with all that ingest takes.
        self.client = make_fast(make_client(
            replace(settings, mqtt_account=alerts_account(settings.mqtt_account, communities)),
            client_id=settings.alerts_client_id + suffix(communities), persistent=True))
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
            # On PostgreSQL the outbox and cursors are the store's: whoever takes the lease over goes on.
            outbox=open_outbox(settings, self.name),
        )
        self.preferences = PreferenceBook(self.store)  # each person's channels and quiet hours
        notifier = Notifier(self.delivery.outbox, Places(lambda d: self.registry.current().get(d)),
                            settings.public_base_url, record=self._record)
        threading.Thread(target=warm_up, name="notify-warm-up", daemon=True).start()
        # The dispatch message names the place in words (compound, building, install place): loaded once.
        self.dispatches = DispatchBook(self.store, settings, places=functools.cache(lambda: place_names(settings)))
        self.engine = Engine(
            self.rules.ruleset,
            self.store if communities is None else PartitionStore(self.store, communities, watcher.current),  # type: ignore[arg-type]
            self._publish, settings.alert_holdoff_s, settings.alerts_update_min_s,
            surroundings=Surroundings(settings.alerts_nearby_radius_m).around,
            escalation=Escalation(self.roster.current, notifier, preferences=self.preferences.current,
                                  scopes=ScopeBook(functools.cache(lambda: open_accounts(settings))).current),
            fold_window_s=settings.alerts_fold_window_s,
            watch_s=settings.alerts_watch_s,
            on_reopen=self.dispatches.reopened,
        )
        remember_from(self.store, self.engine.in_memory)  # written again if a failover lost it
        self.floods = FloodWatch(self.engine, settings.data_path)
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=200_000)
        # Staff commands (alerts/command/): applied on the engine thread, between device messages.
        # Patrol plans (SC_PATROLS_FILE; none when unset): a bad file at start is refused, a bad edit
        # while running is logged and the running plans stay.
        self.patrol_plans = (Watched(plans_path(settings.patrols_file), lambda _p: load_plans(settings))
                             if settings.patrols_file else None)
        self._book: PatrolBook | None = None
        self._book_plans: Plans | None = None
        self._patrols()
        self.handlers = Handlers(settings, self.store, self.engine, self.dispatches)
        self.handlers.plans = self.plans
        self.handlers.checked_in = self._checked_in
        self.handlers.device_kind = self._device_kind
        self.handlers.preferences = self.preferences
        self.commands = CommandServer(settings, self.store, self.handlers.apply, wake=self._wake)
        self.copies: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.counters = {"received": 0, "batches": 0, "bad_batches": 0, "unknown_device": 0, "foreign": 0,
                         "published": 0, "reasserted": 0, "stale_cleared": 0}
        self.lease: Lease | None = None  # held while it runs, when SC_ALERTS_LEASE_S (alerts/lease.py)
        self.mqtt_ok = False
        self.ready = threading.Event()  # connected, and the open alerts published again
        self._stop = threading.Event()

    def plans(self) -> Plans:
        """The patrol plans in force (of this engine's communities)."""
        if self.patrol_plans is None:
            return Plans({})
        plans = self.patrol_plans.current()
        if self.communities is not None:
            plans = Plans({k: p for k, p in plans.plans.items() if p.community in self.communities}, plans.source)
        return plans

    def _patrols(self) -> None:
        """Keep the patrol trigger's book current: the plans in force, and the check-ins from the store
        when the book is new (at start, or a patrol rule newly in force)."""
        book = self.engine.memory.get("patrol")
        if not isinstance(book, PatrolBook):
            self._book = None
            return
        plans = self.plans()
        if book is not self._book:
            book.set_plans(plans)
            book.load(self.store.checkins(PatrolBook.since(plans, time.time())))
            self._book, self._book_plans = book, plans
        elif plans is not self._book_plans:
            book.set_plans(plans)
            self._book_plans = plans

    def _checked_in(self, plan_id: str, checkpoint: str, at: float) -> None:
        if self._book is not None:
            self._book.add(plan_id, checkpoint, at)

    def _device_kind(self, device_id: str) -> str | None:
        dev = self.registry.current().get(device_id)
        return dev.kind if dev is not None else None

    def _wake(self) -> None:
        with contextlib.suppress(queue.Full):  # a full inbox wakes the engine thread anyway
            self.inbox.put_nowait(_WAKE)

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
            client.unsubscribe(DEVICE_TOPICS)
            client.subscribe(subscriptions(self.communities))
            self._wake()  # the open alerts are published again at once, not after the next tick

    def _on_disconnect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        self.mqtt_ok = False
        if not self._stop.is_set():
            log.warning("lost the broker (%s): silence checks paused until it is back", rc)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        # Our own alert copies: only an empty one (a cleared retained copy), or a retained copy
        # handed to us on subscribe, needs a look.
        if msg.topic.startswith(_ALERT_PREFIX):
            if not msg.payload or msg.retain:
                # Device messages come first: alert copies are looked at between them (`copies`).
                self.copies.put((msg.topic, bytes(msg.payload), bool(msg.retain)))
            return
        if msg.topic.startswith(_RECORDS_PREFIX):
            self.inbox.put((msg.topic, bytes(msg.payload)))
        # Anything else (device messages an earlier version's session still held) is ingest's to judge.

    def _alert_copy(self, topic: str, payload: bytes, retained: bool) -> None:
        alert_id = topic.rsplit("/", 1)[-1]
        try:
            alert = self.store.get(alert_id)
        except Exception as exc:  # the store away (a failover): a copy is looked at again on the next connect
            log.warning("retained copy of %s not checked: %s", alert_id, exc)
            return
        if alert is None:
            return
        if alert.state != AlertState.RESOLVED and not payload:
            if alert.alert_id in self.engine.shelved:
                return
            log.warning("retained copy of open alert %s was cleared: re-asserted", alert_id)
            self.counters["reasserted"] += 1
            self._publish(alert)
        elif alert.state == AlertState.RESOLVED and payload and retained:
            log.info("stale retained copy of resolved alert %s cleared", alert_id)
            self.counters["stale_cleared"] += 1
            self.client.publish(topic, b"", qos=1, retain=True)

    def _copies(self, limit: int) -> None:
        for _ in range(limit):
            try:
                topic, payload, retained = self.copies.get_nowait()
            except queue.Empty:
                return
            self._alert_copy(topic, payload, retained)

    def _late_device(self, device_id: str) -> Device | None:
        """A device ingest knew and we do not: the registry file may have changed since we last read it."""
        self.registry.refresh()
        return self.registry.current().get(device_id)

    def step(self, timeout_s: float) -> None:
        """Drain the inbox for up to `timeout_s` (blocking only while it is empty)."""
        deadline = time.monotonic() + timeout_s
        get_nowait, handle, registry = self.inbox.get_nowait, self.engine.handle, self.registry
        counters, mine = self.counters, self.communities
        n = 0
        while True:
            try:
                topic, payload = get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    topic, payload = self.inbox.get(timeout=left)
                except queue.Empty:
                    return
            if not topic:  # woken: a staff command, the broker back, or a stop
                self.commands.drain()
                if self._stop.is_set() or self._feed_restored.is_set():
                    return
                continue
            if mine is not None and topic[len(_RECORDS_PREFIX):] not in mine:
                counters["foreign"] += 1  # another partition's (a subscription left in our session)
                continue
            # Validated by ingest (ingest/forward.py): decoded, not judged again.
            try:
                recs, unknown = decode(payload, registry.current(), self._late_device)
            except Exception:  # only ingest may write here (broker ACL): a bad batch is a bug, said
                log.exception("undecodable record batch on %s (%d bytes) skipped", topic, len(payload))
                counters["bad_batches"] += 1
                continue
            counters["batches"] += 1
            counters["received"] += len(recs)
            if unknown:
                counters["unknown_device"] += unknown
            for rec in recs:
                handle(rec)
            n += 1
            if not n % 16:  # a batch is up to 500 records: staff commands still go first under a flood
                self.commands.drain()
                if time.monotonic() >= deadline:
                    return

    def run_forever(self) -> None:
        self.delivery.start()
        self.commands.start()
        # Not waiting for the broker: staff commands and the store's work go on while it is down.
        connect(self.client, self.settings, persistent=True, wait_s=None)
        last_silence = last_beat = last_compact = last_dispatch_check = time.monotonic()
        try:
            while not self._stop.is_set():
                self.step(self.settings.alerts_tick_s)
                self.commands.drain()
                self._copies(limit=2000)
                fresh = self.rules.poll()
                if fresh is not None:
                    self.engine.set_rules(fresh)
                    self._patrols()
                self.engine.tick()
                now = time.monotonic()
                if self._feed_restored.is_set():
                    self._feed_restored.clear()
                    self.engine.feed_restored()
                    n = self.engine.republish()
                    log.info("connected: %d open alerts re-published (retained) from the store", n)
                    self.ready.set()
                if self.mqtt_ok and now - last_silence >= self.settings.alerts_silence_check_s:
                    self.engine.check_silence(self.registry.current())
                    last_silence = now
                if now - last_dispatch_check >= SILENCE_CHECK_S:
                    self.check_dispatches()
                    last_dispatch_check = now
                if now - last_beat >= 1.0:
                    retry_held(self.store)
                    self.delivery.outbox.retry()  # also with no target to deliver to (each worker retries too)
                    self.commands.write_endpoint()
                    self.floods.check(self.registry.current())
                    self._reload_channels()
                    self._patrols()
                    if now - last_compact >= 60.0:
                        self.delivery.compact()
                        last_compact = now
                    heartbeat.write(self.settings.data_path, self.name, self.snapshot())
                    last_beat = now
        finally:
            self.commands.stop()
            try:
                self.engine.save(seen=True)
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
                "shelved": len(self.engine.shelved), "pending": len(self.engine.pending),
                "rules_error": self.rules.last_error,
                "queue": self.inbox.qsize(), "commands": dict(self.commands.counters),
                "mqtt": "ok" if self.mqtt_ok else "down",
                "notify": self.delivery.snapshot(), "store": held_snapshot(self.store),
                "outbox_held": len(self.delivery.outbox.held),
                "lease": self.lease.snapshot() if self.lease is not None else None,
                "config_errors": [w.error for w in (self.roster, self.channels, self.patrol_plans)
                                  if w is not None and w.error]}

    def stop(self) -> None:
        self._stop.set()
        self._wake()
