"""MQTT → validation → InfluxDB, acknowledging each message only once it is durably stored.

The paho network thread validates and appends to the open batch; a writer thread flushes the
batch by size or age, writes it, stores its dead letters, and only then sends the PUBACKs.
A crash anywhere before that leaves the messages with the broker (persistent session), and a
re-delivery is harmless because a point is identified by (series, ts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from geodata.registry import RegistryWatcher, ensure_registry
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path
from smartcommunity import heartbeat
from smartcommunity.contract import ALERT_TOPIC_ROOT, TOPIC_ROOT, Reason
from smartcommunity.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from smartcommunity.lineprotocol import to_line
from smartcommunity.mqtt import connect, make_client
from smartcommunity.settings import Settings
from smartcommunity.validation import Rejected, Telemetry, validate

log = logging.getLogger(__name__)

SUBSCRIPTION = f"{TOPIC_ROOT}/#"
SHARE_GROUP = "ingest"


@dataclass
class Batch:
    lines: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    min_ts: int | None = None
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
        self.deadletters = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max)
        self.influx = InfluxClient(settings.influx_url, settings.influx_db)
        self.counters: Counter[str] = Counter()
        self.dead_by_reason: Counter[str] = Counter()
        self.lag_ms = 0
        self.influx_ok = True
        self.mqtt_ok = False
        self._batch = Batch()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        cid = settings.ingest_client_id if workers == 1 else f"{settings.ingest_client_id}-{worker}"
        self.client = make_client(settings, client_id=cid, persistent=True, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- MQTT side (paho's network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        self.mqtt_ok = True
        topic = f"$share/{SHARE_GROUP}/{SUBSCRIPTION}" if self.shared else SUBSCRIPTION
        # Retained status copies are old news to a store; the live ones are queued in our session.
        opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        client.subscribe(topic, options=opts)
        log.info("connected to the broker (session present: %s), subscribed to %s",
                 flags.session_present, topic)

    def _on_disconnect(self, client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        self.mqtt_ok = False
        if not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", rc)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        topic = msg.topic
        if topic.startswith(ALERT_TOPIC_ROOT + "/"):
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        now_ms = int(time.time() * 1000)
        line = None
        dead = None
        try:
            rec = validate(topic, msg.payload, self.registry.current(), now_ms)
            line = to_line(rec)
        except Rejected as r:
            dead = DeadLetter(topic, bytes(msg.payload), str(r.reason), r.detail, now_ms)
        with self._lock:
            b = self._batch
            if line is not None:
                b.lines.append(line)
                if isinstance(rec, Telemetry) and (b.min_ts is None or rec.ts_ms < b.min_ts):
                    b.min_ts = rec.ts_ms
            else:
                b.dead.append(dead)  # type: ignore[arg-type]
            if msg.qos:
                b.acks.append(msg.mid)
            self.counters["received"] += 1
            if len(b) >= self.settings.ingest_batch_size:
                self._lock.notify()

    # -- writer thread ----------------------------------------------------------------------
    def _take(self) -> Batch | None:
        flush_s = self.settings.ingest_flush_ms / 1000
        with self._lock:
            while not self._stop.is_set():
                b = self._batch
                age = time.monotonic() - b.opened
                if len(b) >= self.settings.ingest_batch_size or (len(b) and age >= flush_s):
                    break
                self._lock.wait(flush_s if not len(b) else max(0.001, flush_s - age))
            b = self._batch
            self._batch = Batch()
            return b if len(b) else None

    def _write_loop(self) -> None:
        while True:
            b = self._take()
            if b is not None:
                self._flush(b)
            if self._stop.is_set():
                with self._lock:
                    leftover, self._batch = self._batch, Batch()
                if len(leftover):
                    self._flush(leftover)
                return

    def _write_lines(self, lines: list[str]) -> list[tuple[str, str]]:
        """Write; on a 4xx, bisect to find the lines InfluxDB refuses. Returns those with errors."""
        backoff = 0.5
        while True:
            try:
                self.influx.write("\n".join(lines).encode())
                if not self.influx_ok:
                    log.warning("InfluxDB is back")
                self.influx_ok = True
                return []
            except InfluxUnavailable as exc:
                if self.influx_ok:
                    log.error("InfluxDB unavailable, holding the batch (not acknowledging): %s", exc)
                self.influx_ok = False
                self.counters["write_retries"] += 1
                # Unacknowledged messages stay with the broker; its receive-maximum is our bound.
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except InfluxRejected as exc:
                if len(lines) == 1:
                    return [(lines[0], exc.error)]
                mid = len(lines) // 2
                return self._write_lines(lines[:mid]) + self._write_lines(lines[mid:])

    def _flush(self, b: Batch) -> None:
        refused: list[tuple[str, str]] = []
        if b.lines:
            refused = self._write_lines(b.lines)
        dead = list(b.dead)
        now_ms = int(time.time() * 1000)
        for line, err in refused:
            # The store refused a point the contract accepted (e.g. a field type conflict).
            dead.append(DeadLetter("", line.encode(), str(Reason.BAD_VALUE), f"influxdb: {err}", now_ms))
        self.deadletters.add_many(dead)
        for mid in b.acks:
            self.client.ack(mid, 1)
        for d in dead:
            self.dead_by_reason[d.reason] += 1
        self.counters["stored"] += len(b.lines) - len(refused)
        self.counters["deadlettered"] += len(dead)
        if b.min_ts is not None:
            self.lag_ms = now_ms - b.min_ts

    # -- lifecycle --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        return {
            "counters": dict(self.counters),
            "deadlettered_by_reason": dict(self.dead_by_reason),
            "deadletter_dropped": self.deadletters.dropped(),
            "lag_ms": self.lag_ms,
            "mqtt": "ok" if self.mqtt_ok else "down",
            "influxdb": "ok" if self.influx_ok else "down",
            "registry_devices": len(self.registry.current()),
        }

    def start(self) -> None:
        self._writer.start()
        connect(self.client, self.settings, persistent=True)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                heartbeat.write(self.settings.data_path, self.name, self.snapshot())
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def close(self) -> None:
        self.stop()
        self._writer.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
        heartbeat.write(self.settings.data_path, self.name, self.snapshot() | {"stopped": True})
        self.deadletters.close()
        self.influx.close()
