"""Accepted records, handed on from ingest to the alert engine: every message is validated once.

Ingest accepts a device message (valid, and within its device's budget) and, besides batching it
for InfluxDB, appends a compact form of the record to a per-community buffer; the buffer goes out
as one QoS 1 message on `RECORDS_ROOT/{community}` when it holds `FORWARD_MAX` records (or about
`FORWARD_MAX_BYTES`: the secure broker drops a client's packet over 64 KiB) or its oldest is
`FORWARD_MS` old. The alert service subscribes to those topics (only its partition's
communities) on its own persistent session and turns each batch back into records against its
registry, without validating again: a dead-lettered message (invalid, or `rate_limited`) never
reaches a rule.

Why a topic, and why this shape (measured on this 2-core machine, best of 5 over 59,460 telemetry
records of the street registry, load average 12-14): `validate()` costs 5.6-7.0 µs a record and was
the alert service's largest per-message cost; encoding a record here costs 0.3 µs and decoding it
there 1.6-1.9 µs (bench/bench_alerts.py (a) times the whole path), and the engine receives a few
MQTT messages per 10 ms instead of one per device message. Running
the rules inside each ingest worker would save that too, but would tie alert state to ingest's
worker count and shared-subscription split (a device's records would move between engines), and put
the rules behind ingest's InfluxDB back-pressure; a shared-memory ring would not survive a restart
of either side. The broker already gives what is needed: a persistent session (nothing lost across
an alerts restart) and a per-community split for partitioned engines.

The forward happens when the message is accepted, before (and independently of) the InfluxDB write,
so the engine keeps warning while the database is down; a batch is always handed to the socket
before the PUBACKs of the messages it carries (`flush()` from the acknowledging path), so a crash
loses nothing: an unacknowledged message is re-delivered and forwarded again.

The topic root is outside the contract's `sc/` tree, so no consumer of device topics (nor ingest's
own `sc/#` subscription) ever sees it; on a secure broker only the ingest accounts may write it and
only the alert accounts read it (security/broker.py).

Wire form: a JSON array of records, each `[type, device_id, ts_ms, a, b]`: telemetry `[0, id, ts,
seq, metrics]`, status `[1, id, ts, state, from_will]`, event `[2, id, ts, event, detail]`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from core.contract import Device
from core.validation import Event, Record, Status, Telemetry

log = logging.getLogger(__name__)

RECORDS_ROOT = "sc-internal/records"
FORWARD_MS = 10.0  # at most this old when a batch is handed on: the warning path's added latency
FORWARD_MAX = 500  # records per batch: a flood goes out in full batches, not waiting
# A row is at most its device message's size (≤ 16 KiB) plus its id and ts: a batch cut past 32 KiB
# stays under the secure broker's packet limit (SC_MQTT_MAX_PACKET_BYTES, 64 KiB).
FORWARD_MAX_BYTES = 32 * 1024
_ROW_OVERHEAD = 96
OUT_INFLIGHT = 1000  # unacknowledged QoS 1 batches on the wire (paho's default is 20)

_TELEMETRY, _STATUS, _EVENT = 0, 1, 2


def records_topic(community: str) -> str:
    return f"{RECORDS_ROOT}/{community}"


def community_of(topic: str) -> str | None:
    """The community of a records topic, or None if the topic is not one."""
    head, _, community = topic.rpartition("/")
    return community if head == RECORDS_ROOT and community else None


def encode_one(rec: Record) -> list[Any]:
    t = type(rec)
    if t is Telemetry:
        return [_TELEMETRY, rec.device.device_id, rec.ts_ms, rec.seq, rec.metrics]  # type: ignore[union-attr]
    if t is Status:
        return [_STATUS, rec.device.device_id, rec.ts_ms, rec.state, rec.from_will]  # type: ignore[union-attr]
    return [_EVENT, rec.device.device_id, rec.ts_ms, rec.event, rec.detail]  # type: ignore[union-attr]


def encode(recs: Iterable[Record]) -> bytes:
    return orjson.dumps([encode_one(r) for r in recs])


def decode(payload: bytes, devices: Mapping[str, Device],
           missing: Callable[[str], Device | None] | None = None) -> tuple[list[Record], int]:
    """(records, how many named a device `devices` does not hold). `missing` gets a second chance at
    an unknown device (the registry file may have changed since it was last read)."""
    out: list[Record] = []
    unknown = 0
    get = getattr(devices, "devices", devices).get  # a Registry's own dict: Mapping.get costs ~1 µs more
    for typ, dev_id, ts, a, b in orjson.loads(payload):
        dev = get(dev_id)
        if dev is None:
            dev = missing(dev_id) if missing is not None else None
            if dev is None:
                unknown += 1
                continue
        if typ == _TELEMETRY:
            out.append(Telemetry(dev, ts, a, b))
        elif typ == _STATUS:
            out.append(Status(dev, ts, a, b))
        else:
            out.append(Event(dev, ts, a, b))
    return out, unknown


class Forwarder:
    """Per-community buffers of accepted records, published in small batches (thread-safe).

    `add` is called on the network thread for each accepted record; a batcher thread publishes a
    buffer FORWARD_MS after its first record; `flush` publishes everything now."""

    def __init__(self, publish: Callable[[str, bytes], None], max_records: int = FORWARD_MAX,
                 max_ms: float = FORWARD_MS) -> None:
        self._publish = publish
        self.max_records = max_records
        self.max_s = max_ms / 1000
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._bufs: dict[str, list[list[Any]]] = {}
        self._bytes: dict[str, int] = {}  # per community: the buffered rows' size, at most
        self._first = 0.0  # monotonic time of the oldest buffered record (0: nothing buffered)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.forwarded = 0
        self.batches = 0
        self._thread = threading.Thread(target=self._loop, name="ingest-forwarder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, rec: Record, size: int = 0) -> None:
        """`size`: the device message's payload size (bounds the encoded row's)."""
        community = rec.device.community
        row = encode_one(rec)
        with self._lock:
            buf = self._bufs.get(community)
            if buf is None:
                buf = self._bufs[community] = []
            buf.append(row)
            n = self._bytes[community] = self._bytes.get(community, 0) + size + _ROW_OVERHEAD
            if not self._first:
                self._first = time.monotonic()
                self._wake.set()
            full = len(buf) >= self.max_records or n >= FORWARD_MAX_BYTES
        if full:
            with self._send_lock:  # cut under the send lock: batches leave in the order they were cut
                with self._lock:
                    rows = self._bufs.pop(community, [])
                    self._bytes.pop(community, None)
                self._send(community, rows)

    def flush(self) -> None:
        with self._send_lock:
            with self._lock:
                bufs, self._bufs, self._first = self._bufs, {}, 0.0
                self._bytes = {}
            for community, rows in bufs.items():
                self._send(community, rows)

    def _send(self, community: str, rows: list[list[Any]]) -> None:
        if rows:
            self._publish(records_topic(community), orjson.dumps(rows))
            self.forwarded += len(rows)
            self.batches += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                first = self._first
            if not first:
                continue
            wait = first + self.max_s - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            self.flush()
        self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
