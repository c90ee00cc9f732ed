"""MQTT → validation → InfluxDB (or the disk spool), acknowledging each message only once durable.

Threads of one ingest process:
- paho's network thread: `_on_message` validates, renders line protocol and appends to the open
  batch; a full batch (or, via the flusher thread, an old one) goes on the write queue. An accepted
  record is also handed on to the alert engine (ingest/forward.py), before and apart from the write.
- writers (`SC_INGEST_WRITERS`): write a batch to InfluxDB (bisecting out refused points), or, when
  InfluxDB is down, append it to the fsync'd spool; store its dead letters; only then send the
  PUBACKs. If neither InfluxDB nor the spool can take it (disk full), they hold it, unacknowledged,
  and say so: the broker keeps everything, and its receive-maximum stops the flow.
- the replayer: probes InfluxDB while it is down, sets up retention, and replays the spool in order
  while live batches keep going straight to InfluxDB.
A crash anywhere leaves unacknowledged messages with the broker (persistent session); re-delivery
is harmless because a point is identified by (series, ts).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from core import heartbeat
from core.accounts import ingest_account
from core.contract import ALERT_TOPIC_ROOT, TOPIC_ROOT, Reason
from core.diskfull import is_disk_full
from core.influx import InfluxClient, InfluxUnavailable, client_for
from core.lineprotocol import split_lines, to_line
from core.mqtt import connect, make_client
from core.registry import RegistryWatcher, ensure_registry
from core.settings import Settings
from core.validation import Rejected, Telemetry, validate
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path
from ingest.fastmqtt import make_fast
from ingest.forward import OUT_INFLIGHT, Forwarder
from ingest.ratelimit import RATE_LIMITED, DeviceBudget, device_of
from ingest.retention import ensure_retention
from ingest.spool import Spool, SpoolFull, adopt_orphan_spools, release_orphan
from ingest.stats import ClockSkew, Stats
from ingest.writer import write_isolating

log = logging.getLogger(__name__)

SUBSCRIPTION = f"{TOPIC_ROOT}/#"
SHARE_GROUP = "ingest"
_ALERT_PREFIX = ALERT_TOPIC_ROOT + "/"
_HOLD_LOG_EVERY_S = 30.0
HELD_DEAD_MAX = 50_000  # dead letters kept in memory while the disk is full (beyond: counted, not kept)


@dataclass(slots=True)
class Batch:
    gen: int  # MQTT connection generation: acks from an older connection are not sent
    lines: list[str] = field(default_factory=list)
    sources: list[tuple[str, bytes]] = field(default_factory=list)  # (topic, payload) per line
    dead: list[DeadLetter] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    ts_min: int = 0
    ts_sum: int = 0
    ts_n: int = 0
    opened: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.lines) + len(self.dead)


class Ingestor:
    def __init__(self, settings: Settings, worker: int = 0, workers: int = 1) -> None:
        self.settings = settings
        self.worker = worker
        self.shared = workers > 1
        self.name = f"ingest-{worker}"
        ensure_registry(settings)
        self.registry = RegistryWatcher(settings.registry_path, settings.registry_poll_s)
        self.deadletters = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max,
                                           settings.deadletter_max_bytes)
        self.spool = Spool(settings.data_path / "spool" / self.name, settings.spool_max_bytes)
        # Spools of workers that no longer exist (the worker count went down): worker 0 replays them.
        self.orphans = adopt_orphan_spools(settings.data_path / "spool", workers, settings.spool_max_bytes
                                           ) if worker == 0 else []
        self.influx = client_for(settings)  # replayer/probe thread
        self.stats = Stats()
        self.skew = ClockSkew()
        self.budget = DeviceBudget(settings.ingest_device_rate, settings.ingest_device_burst)
        self._over_budget = (f"over the per-device budget of {settings.ingest_device_rate:g} msg/s "
                             f"(burst {settings.ingest_device_burst})")
        self.dead_by_reason = self.stats.dead_by_reason
        self.influx_ok = True
        # Set by a failed write, cleared only by a written one: a database that answers /ping but
        # cannot write (its disk full, its WAL broken) is down, and health says so.
        self.write_failing_since: float | None = None
        self.write_error: str | None = None
        self._up_logged = -1e9
        # Dead letters the full disk could not take: kept here (their batch is acknowledged, or the
        # broker's in-flight window would fill with it and stop ingest) and written when it can.
        self._held_dead: list[DeadLetter] = []
        self._dead_lock = threading.Lock()
        self._dead_tried = 0.0
        self.mqtt_ok = False
        self.hold_reason: str | None = None  # set while a batch can be neither written nor spooled
        self._hold_logged = 0.0
        self._retention_done = False
        self._gen = 0
        self._ack_lock = threading.Lock()
        self._batch = Batch(0)
        self._lock = threading.Lock()
        # Bounded: when the writers fall behind (a backlog after an outage, a storm of junk, InfluxDB
        # slow), the network thread waits here instead of pulling the broker's whole backlog into
        # memory and starving the writers of the GIL; the broker keeps what is not yet read.
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2 * max(1, settings.ingest_writers))
        self._stop = threading.Event()
        self._wake_replayer = threading.Event()
        self._threads = [threading.Thread(target=self._flush_loop, name="ingest-flusher", daemon=True),
                         threading.Thread(target=self._replay_loop, name="ingest-replayer", daemon=True)]
        self._writers = [threading.Thread(target=self._write_loop, name=f"ingest-writer-{i}", daemon=True)
                         for i in range(max(1, settings.ingest_writers))]
        # One persistent session per worker: its own fixed client id, so each resumes its share.
        cid = settings.ingest_client_id if workers == 1 else f"{settings.ingest_client_id}-{worker}"
        acct = ingest_account(settings.mqtt_account, worker, workers)  # SC_SECURE: one account per worker
        self.client = make_fast(make_client(replace(settings, mqtt_account=acct), client_id=cid, persistent=True,
                                            manual_ack=True))
        self.client.reconnect_delay_set(min_delay=1, max_delay=8)  # resume quickly after a broker restart
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(OUT_INFLIGHT)  # the forwarded batches (QoS 1)
        self.forward = Forwarder(self._forward)

    @property
    def counters(self) -> dict[str, int]:
        return self.stats.counters

    # -- MQTT side (paho's network thread) -----------------------------------------------------
    def _forward(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def _on_connect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        with self._ack_lock:
            self._gen += 1
        self.mqtt_ok = True
        topic = f"$share/{SHARE_GROUP}/{SUBSCRIPTION}" if self.shared else SUBSCRIPTION
        # Retained status copies are old news to a store; the live ones are queued in our session.
        opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        client.subscribe(topic, options=opts)
        log.info("connected to the broker (session present: %s), subscribed to %s",
                 flags.session_present, topic)

    def _on_disconnect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        with self._ack_lock:
            self._gen += 1  # unacked messages of this connection will be re-delivered
        self.mqtt_ok = False
        if not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", rc)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        payload = msg.payload
        now_ms = int(time.time() * 1000)
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        rec = line = dead = None
        if topic.startswith(_ALERT_PREFIX):  # our own alert output shares the sc/ root
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        try:
            rec = validate(topic, payload, self.registry.current(), now_ms)
            line = to_line(rec)
        except Rejected as r:
            dead = DeadLetter(topic, bytes(payload), str(r.reason), r.detail, now_ms)
        device = rec.device.device_id if rec is not None else device_of(topic)
        if device is not None and not self.budget.allow(device, time.monotonic(), getattr(rec, "ts_ms", None)):
            line = None  # beyond the device's budget: dead-lettered, counted, reported (never silent)
            dead = DeadLetter(topic, bytes(payload), RATE_LIMITED, self._over_budget, now_ms)
        if line is not None:
            self.forward.add(rec, len(payload))  # type: ignore[arg-type]  # accepted: the engine gets it now
        full = ready = None
        with self._lock:
            b = self._batch
            if b.gen != self._gen:  # first message of a new connection: never mix generations
                full, b = b, Batch(self._gen)
                self._batch = b
            if line is not None:
                b.lines.append(line)
                b.sources.append((topic, payload))
                if type(rec) is Telemetry:
                    ts = rec.ts_ms
                    self.skew.add(now_ms - ts)
                    if not b.ts_n or ts < b.ts_min:
                        b.ts_min = ts
                    b.ts_sum += ts
                    b.ts_n += 1
            else:
                b.dead.append(dead)  # type: ignore[arg-type]
            if msg.qos:
                b.mids.append(msg.mid)
            self.stats.received += 1
            # Points and dead letters fill a batch separately: junk interleaved with valid data must
            # not halve the InfluxDB write size (a storm would then cost twice the writes per point).
            if max(len(b.lines), len(b.dead)) >= self.settings.ingest_batch_size:
                ready = b
                self._batch = Batch(self._gen)
        if full is not None and len(full):
            self._enqueue(full)
        if ready is not None:
            self._enqueue(ready)

    def _enqueue(self, b: Batch) -> None:
        """Hand a batch to the writers, waiting while they are behind (never under `_lock`)."""
        while True:
            stopping = self._stop.is_set()
            try:
                self._queue.put(b, block=not stopping, timeout=0.5)
                return
            except queue.Full:
                if stopping:
                    return  # shutting down: never acknowledged, so the broker delivers it again

    # -- batching by time ------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        flush_s = self.settings.ingest_flush_ms / 1000
        while not self._stop.wait(flush_s / 4):
            self._close_batch(flush_s)
        self._close_batch(0.0)

    def _close_batch(self, older_than_s: float) -> None:
        with self._lock:
            b = self._batch
            if not len(b) or time.monotonic() - b.opened < older_than_s:
                if not len(b):
                    b.opened = time.monotonic()
                return
            self._batch = Batch(self._gen)
        self._enqueue(b)

    # -- writers ---------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        influx = client_for(self.settings)
        try:
            while True:
                b = self._queue.get()
                if b is None:
                    return
                try:
                    self._flush(influx, b)
                except Exception:  # a bug must not kill the writer: the batch stays unacked
                    log.exception("ingest: batch of %d messages not stored (will be re-delivered)", len(b))
        finally:
            influx.close()

    def _flush(self, influx: InfluxClient, b: Batch) -> None:
        refused: list[tuple[int, str]] = []
        spooled = False
        if b.lines:
            body = "\n".join(b.lines).encode()
            result = self._store(influx, b.lines, body)
            if result is None:
                return  # stopping while held: leave the messages with the broker
            spooled, refused = result
        now_ms = int(time.time() * 1000)
        dead = list(b.dead)
        for i, err in refused:
            # InfluxDB refused a point the contract accepts (e.g. a field type conflict).
            topic, payload = b.sources[i]
            dead.append(DeadLetter(topic, bytes(payload), str(Reason.BAD_VALUE), f"influxdb: {err}", now_ms))
        if dead:
            self._dead_letters(dead)
        self._ack(b)
        lag = (now_ms - b.ts_min, now_ms - b.ts_sum // b.ts_n) if b.ts_n and not spooled else None
        self.stats.batch_done(len(b.lines) - len(refused), spooled, dead, len(refused), lag)

    def _store(self, influx: InfluxClient, lines: list[str], body: bytes
               ) -> tuple[bool, list[tuple[int, str]]] | None:
        """(spooled?, refused lines), holding (retrying) while neither InfluxDB nor the spool can take it."""
        while True:
            if self.influx_ok:
                try:
                    refused = write_isolating(influx, lines, body, self.settings.ingest_gzip)
                    self.write_failing_since = None
                    self._release_hold()
                    return False, refused
                except InfluxUnavailable as exc:
                    self._influx_down(exc)
            try:
                self.spool.append(body)
                self._release_hold()
                self._wake_replayer.set()
                return True, []
            except SpoolFull as exc:
                self._hold(exc)
            if self._stop.wait(1.0):
                return None
            if not self.influx_ok and influx.ping(1.0):
                self._influx_up()

    def _dead_letters(self, dead: list[DeadLetter]) -> None:
        with self._dead_lock:
            if self._held_dead:
                self._retry_dead_locked()
            if not self._held_dead:
                try:
                    self.deadletters.add_many(dead)
                    return
                except Exception as exc:
                    if not is_disk_full(exc):
                        raise
                    self.deadletters.rollback()
                    log.critical("dead-letter store cannot write (%s): dead letters kept in memory (up to %d) "
                                 "until there is space", exc, HELD_DEAD_MAX)
                    self._dead_tried = time.monotonic()
            room = max(0, HELD_DEAD_MAX - len(self._held_dead))
            self._held_dead.extend(dead[:room])
            if len(dead) > room:
                self.stats.add("deadletters_not_kept", len(dead) - room)

    def _retry_dead(self) -> None:
        if self._held_dead and time.monotonic() - self._dead_tried >= 1.0:
            with self._dead_lock:
                self._retry_dead_locked()

    def _retry_dead_locked(self) -> None:
        if time.monotonic() - self._dead_tried < 1.0:
            return
        self._dead_tried = time.monotonic()
        try:
            self.deadletters.add_many(self._held_dead)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.deadletters.rollback()
            return
        log.warning("dead-letter store writing again: %d held dead letters written", len(self._held_dead))
        self._held_dead = []

    def _ack(self, b: Batch) -> None:
        if not b.mids:
            return
        # The records of these messages go to the socket before their PUBACKs: once the broker has
        # the acks, it has the forwarded records too (same connection, in order).
        self.forward.flush()
        with self._ack_lock:
            if b.gen == self._gen:
                self.client.ack_many(b.mids)
                return
        # The connection changed: the broker re-delivers these, and the new copies get acked.
        self.stats.add("acks_skipped_reconnect", len(b.mids))

    # -- health transitions ------------------------------------------------------------------------
    def _influx_down(self, exc: Exception) -> None:
        if self.influx_ok and self.write_failing_since is None:
            log.error("InfluxDB unavailable: spooling to %s until it is back: %s", self.spool.dir, exc)
        if self.write_failing_since is None:
            self.write_failing_since = time.time()
        self.write_error = str(exc)[:300]
        self.influx_ok = False

    def _influx_up(self) -> None:
        if not self.influx_ok and time.monotonic() - self._up_logged > _HOLD_LOG_EVERY_S:
            # While it answers /ping but refuses writes this repeats: said once per 30 s.
            log.warning("InfluxDB answers again: writing live data and replaying the spool")
            self._up_logged = time.monotonic()
        self.influx_ok = True

    def _hold(self, exc: SpoolFull) -> None:
        now = time.monotonic()
        if self.hold_reason != exc.reason or now - self._hold_logged > _HOLD_LOG_EVERY_S:
            log.critical("INGEST HOLDING: InfluxDB is down and the spool cannot take more (%s). "
                         "Messages are NOT acknowledged; the broker keeps them. Free disk space or "
                         "raise SC_SPOOL_MAX_BYTES.", exc)
            self._hold_logged = now
        self.hold_reason = exc.reason

    def _release_hold(self) -> None:
        if self.hold_reason is not None:
            log.warning("ingest no longer holding (%s cleared): acknowledging again", self.hold_reason)
            self.hold_reason = None

    # -- replayer ----------------------------------------------------------------------------------
    def _replay_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._replay_step():
                    self._wake_replayer.wait(0.5 if self.influx_ok else 1.0)
                    self._wake_replayer.clear()
            except Exception:
                log.exception("ingest: replayer error")
                self._stop.wait(1.0)

    def _replay_step(self) -> bool:
        """One unit of background work; False when there was nothing to do."""
        self._retry_dead()
        if not self.influx_ok:
            if not self.influx.ping(1.0):
                return False
            self._influx_up()
        try:
            if not self._retention_done:
                s = self.settings
                ensure_retention(self.influx, s.influx_raw_days, s.influx_rollup_days)
                self._retention_done = True
            spool = self.spool
            rec = spool.peek()
            while rec is None and self.orphans:
                spool = self.orphans[0]
                rec = spool.peek()
                if rec is None:
                    release_orphan(self.orphans.pop(0))
            if rec is None:
                return False
            lines = split_lines(rec.payload.decode())  # an event's detail may hold a line break
            refused = write_isolating(self.influx, lines, rec.payload, self.settings.ingest_gzip)
        except InfluxUnavailable as exc:
            self._influx_down(exc)
            return False
        now_ms = int(time.time() * 1000)
        dead = [DeadLetter(_topic_of(lines[i]), lines[i].encode(), str(Reason.BAD_VALUE),
                           f"influxdb (replay): {err}", now_ms) for i, err in refused]
        if dead:
            self.deadletters.add_many(dead)
        self.write_failing_since = None
        spool.commit(rec)
        self.stats.replayed_done(len(lines) - len(refused), dead)
        return True

    # -- lifecycle ---------------------------------------------------------------------------------
    def state(self) -> str:
        if self.hold_reason:
            return "holding"
        if not self.influx_ok:
            return "spooling"
        return "replaying" if not self.spool.empty() or self.orphans else "ok"

    def snapshot(self) -> dict[str, object]:
        snap = self.stats.snapshot() | self.skew.snapshot()
        snap.update(
            state=self.state(),
            acking=self.hold_reason is None,
            holding_reason=self.hold_reason,
            mqtt="ok" if self.mqtt_ok else "down",
            influxdb="ok" if self.influx_ok and self.write_failing_since is None else "down",
            influx_write_failing_since=self.write_failing_since,
            influx_write_error=self.write_error if self.write_failing_since is not None else None,
            spool_bytes=self.spool.pending_bytes() + sum(o.pending_bytes() for o in self.orphans),
            spool_disk_bytes=self.spool.bytes,
            spool_skipped_bytes=self.spool.skipped_bytes,
            deadletter_dropped=self.deadletters.dropped(),
            deadletters_held=len(self._held_dead),
            disk_full=bool(self._held_dead) or self.hold_reason == "disk_full",
            rate_limited_devices=self.budget.recent(),
            registry_devices=len(self.registry.current()),
            registry_reloads=self.registry.reload_count,
            queued_batches=self._queue.qsize(),
            worker=self.worker,
            forwarded=self.forward.forwarded,
            forwarded_batches=self.forward.batches,
        )
        return snap

    def start(self) -> None:
        for t in self._threads + self._writers:
            t.start()
        self.forward.start()
        connect(self.client, self.settings, persistent=True,
                receive_maximum=min(65535, self.settings.ingest_max_inflight))

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(self.settings.ingest_heartbeat_s):
                heartbeat.write(self.settings.data_path, self.name, self.snapshot())
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake_replayer.set()

    def close(self) -> None:
        self.stop()
        for t in self._threads:
            t.join(timeout=30)
        for _ in self._writers:
            self._queue.put(None)
        for t in self._writers:
            t.join(timeout=30)
        self.forward.stop()
        self.client.disconnect()
        self.client.loop_stop()
        heartbeat.write(self.settings.data_path, self.name, self.snapshot() | {"stopped": True})
        self.deadletters.close()
        self.spool.close()
        for orphan in self.orphans:
            orphan.close()
        self.influx.close()


def _topic_of(line: str) -> str:
    """The device topic a spooled telemetry line came from (for dead letters found on replay)."""
    head = line.split(" ", 1)[0].split(",")
    tags = dict(t.split("=", 1) for t in head[1:] if "=" in t)
    kind = {"device_status": "status", "device_event": "event"}.get(head[0], "telemetry")
    return f"{TOPIC_ROOT}/{tags.get('community', '?')}/{tags.get('kind', '?')}/{tags.get('device_id', '?')}/{kind}"
