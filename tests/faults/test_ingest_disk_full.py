"""Ingest (re)started while its data disk is full: it runs instead of crash-looping, stores the
telemetry it is given (InfluxDB has its own disk), holds the dead letters it cannot write, and writes
them once there is room."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson

from core.influx import InfluxClient
from core.settings import Settings
from ingest.deadletter import DeadLetterStore, store_path
from tests.conftest import wait_until
from tests.faults.conftest import SmallDisk
from tests.faults.test_alerts_disk_full import gas_devices
from tests.ingest.conftest import IngestProcess


def test_ingest_started_on_a_full_disk_keeps_storing_and_writes_its_dead_letters_later(
        settings: Settings, small_disk: SmallDisk, influx: InfluxClient, publisher) -> None:  # type: ignore[no-untyped-def]
    s = replace(settings, data_dir=str(small_disk.root / "var"))
    (dev,) = gas_devices(s, 1)
    first = IngestProcess(s).start()  # a first run leaves its dead-letter store and spool on the disk
    first.wait_connected()
    first.stop()
    for p in (s.data_path / "run").glob("ingest*.json"):
        p.unlink()
    small_disk.fill()

    ing = IngestProcess(s)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    ing.log_path = settings.data_path / "ingest-on-full-disk.log"  # the log on a disk with room, to read it
    ing.start()
    try:
        topic = f"sc/{dev.community}/gas/{dev.device_id}/telemetry"
        ts = int(time.time() * 1000)
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline and stored == 0:  # until its subscription is up (no heartbeat: full)
            assert ing.proc is not None and ing.proc.poll() is None, f"ingest ended on a full disk:\n{ing.log()}"
            publisher.publish(topic, orjson.dumps({"ts": ts, "m": {"lel_pct": 3.5}}), qos=1).wait_for_publish(5)
            time.sleep(0.5)
            rows = influx.query(f"SELECT count(lel_pct) FROM gas WHERE device_id = '{dev.device_id}' AND time = {ts}ms")
            stored = int(rows[0].values[0][1]) if rows and rows[0].values else 0
        assert stored == 1, f"a reading on a full data disk was not stored:\n{ing.log()}"
        for i in range(5):  # garbage: dead letters the full disk cannot take
            publisher.publish(topic, b"not json %d" % i, qos=1).wait_for_publish(5)
        time.sleep(2)
        assert ing.proc.poll() is None, f"ingest ended on a full disk:\n{ing.log()}"

        small_disk.free()
        store = DeadLetterStore(store_path(s.data_path), 1000)
        try:
            assert wait_until(lambda: sum(1 for d in store.list() if d["payload"].startswith("not json")) == 5, 15), \
                ing.log()
        finally:
            store.close()
        assert ing.proc.poll() is None
    finally:
        ing.stop()
