"""Fault drills against real services, counting every message: the ingestor killed, InfluxDB down,
the broker restarted, the spool's disk full. Short versions run by default; `-m slow` for the long."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.influx import InfluxClient
from core.settings import Settings
from smartcommunity.services import free_port, start_influxdb, start_mosquitto
from tests.conftest import wait_until
from tests.ingest.conftest import IngestProcess, Publisher, gas_devices, gas_messages, wait_count

RATE = 2000.0


def paced_messages(settings: Settings, seconds: float) -> list[tuple[str, bytes]]:
    """RATE msg/s for `seconds`, ts close to the wall clock at publish time, each (device, ts) unique."""
    devs = gas_devices(settings, 200)
    n = int(RATE * seconds)
    msgs = gas_messages(devs, n, 0)
    base = int(time.time() * 1000)
    out = []
    for i, (topic, payload) in enumerate(msgs):
        out.append((topic, payload.replace(b'"ts":%d' % i, b'"ts":%d' % (base + int(i * 1000 / RATE)), 1)))
    return out


def start_load(s: Settings, ingest_proc: list[IngestProcess], seconds: float, **env: str
               ) -> tuple[list[tuple[str, bytes]], IngestProcess, Publisher]:
    """The common start of a drill: an ingestor connected, then RATE msg/s for `seconds` flowing."""
    msgs = paced_messages(s, seconds)
    ing = IngestProcess(s, **env).start()
    ingest_proc.append(ing)
    ing.wait_connected()
    return msgs, ing, Publisher(s, msgs, RATE).start()


@pytest.mark.parametrize("down_s", [pytest.param(3, id="short"),
                                    pytest.param(10, id="slow", marks=pytest.mark.slow)])
def test_kill9_ingestor(settings: Settings, influx: InfluxClient, ingest_proc: list[IngestProcess],
                        down_s: float) -> None:
    msgs, ing, pub = start_load(settings, ingest_proc, down_s + 6)
    try:
        time.sleep(2)
        ing.kill9()
        killed_at = pub.sent
        time.sleep(down_s)
        ing2 = IngestProcess(settings).start()
        ingest_proc.append(ing2)
        assert pub.wait_acked(down_s + 30)
        assert wait_count(influx, len(msgs), 60) == len(msgs), ing2.log()
        assert 0 < killed_at < len(msgs)
    finally:
        pub.close()


@pytest.mark.parametrize("down_s", [pytest.param(5, id="short"),
                                    pytest.param(60, id="slow", marks=pytest.mark.slow)])
def test_influxdb_down(settings: Settings, ingest_proc: list[IngestProcess], down_s: float) -> None:
    s = replace(settings, influx_url=f"http://127.0.0.1:{free_port()}")
    db = start_influxdb(s)  # dedicated: this test stops it
    influx = InfluxClient(s.influx_url, s.influx_db)
    try:
        msgs, ing, pub = start_load(s, ingest_proc, down_s + 10)
        time.sleep(2)
        db.stop()
        assert wait_until(lambda: (hb := ing.heartbeats()) and hb[0]["influxdb"] == "down"
                          and hb[0]["counters"]["spooled"] > 0, 10), ing.log()
        time.sleep(down_s)
        db = start_influxdb(s)  # same port, same data dir
        back_ms = int(time.time() * 1000)
        # Live data flows again within seconds, while the spool is still being replayed.
        assert wait_until(lambda: influx.query(f"SELECT count(lel_pct) FROM gas WHERE time > {back_ms}ms"), 20), \
            ing.log()
        assert pub.wait_acked(60)
        assert wait_count(influx, len(msgs), 60) == len(msgs), ing.log()
        assert wait_until(lambda: (hb := ing.heartbeats()) and hb[0]["spool_bytes"] == 0, 10)
        hb = ing.heartbeats()[0]
        assert hb["counters"]["replayed"] > 0 and hb["state"] == "ok" and hb["influxdb"] == "ok"
        pub.close()
    finally:
        influx.close()
        db.stop()


@pytest.mark.parametrize("down_s", [pytest.param(2, id="short"),
                                    pytest.param(15, id="slow", marks=pytest.mark.slow)])
def test_broker_restart(settings: Settings, influx: InfluxClient, ingest_proc: list[IngestProcess],
                        down_s: float) -> None:
    s = replace(settings, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    broker = start_mosquitto(s)  # dedicated, with persistence: this test restarts it
    try:
        msgs, ing, pub = start_load(s, ingest_proc, down_s + 8)
        time.sleep(2)
        broker.stop()
        time.sleep(down_s)
        broker = start_mosquitto(s)  # same port, same persistence file
        assert wait_until(ing.connected, 20), ing.log()  # resumed by itself
        assert pub.wait_acked(60)  # everything the broker accepted ...
        assert wait_count(influx, len(msgs), 60) == len(msgs), ing.log()  # ... is stored
        pub.close()
    finally:
        broker.stop()


@pytest.fixture
def tiny_spool(settings: Settings):  # type: ignore[no-untyped-def]
    """A 256 KiB tmpfs as the spool directory: a real ENOSPC. None where mounting is not possible."""
    spool = settings.data_path / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(spool)],
                        capture_output=True).returncode == 0
    yield spool if ok else None
    if ok:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def test_disk_full_stops_acknowledging(settings: Settings, ingest_proc: list[IngestProcess],
                                       tiny_spool: Path | None) -> None:
    s = replace(settings, influx_url=f"http://127.0.0.1:{free_port()}")  # InfluxDB down from the start
    extra = {} if tiny_spool else {"SC_SPOOL_MAX_BYTES": "262144"}  # fallback: the byte bound
    want_reason = "disk_full" if tiny_spool else "spool_full"
    msgs, ing, pub = start_load(s, ingest_proc, 4, **extra)  # ~8,000 lines, ~1.3 MB: far more than fits
    assert wait_until(lambda: (hb := ing.heartbeats()) and hb[0]["state"] == "holding", 20), ing.log()
    hb = ing.heartbeats()[0]
    assert hb["holding_reason"] == want_reason and hb["acking"] is False
    assert "INGEST HOLDING" in ing.log()
    # What it had in hand when it began holding is spooled (on a busy machine, after the first holding
    # heartbeat); from then on nothing more is taken: the count settles, and stays.
    last = [-1]

    def settled() -> bool:
        n = ing.heartbeats()[0]["counters"]["spooled"]
        same, last[0] = n == last[0], n
        return same

    assert wait_until(settled, timeout=30, every=2.0), "ingest went on taking messages while holding"
    spooled = last[0]
    assert 0 < spooled < len(msgs)
    time.sleep(1.5)
    assert ing.heartbeats()[0]["counters"]["spooled"] == spooled  # nothing more taken, nothing dropped
    assert ing.heartbeats()[0]["counters"]["deadlettered"] == 0
    # Recovery: InfluxDB appears; held and broker-kept messages are written, the spool replayed.
    db = start_influxdb(s)
    influx = InfluxClient(s.influx_url, s.influx_db)
    try:
        assert pub.wait_acked(30)
        assert wait_count(influx, len(msgs), 60) == len(msgs), ing.log()
        assert wait_until(lambda: (h := ing.heartbeats()) and h[0]["state"] == "ok" and h[0]["acking"], 15)
        pub.close()
    finally:
        influx.close()
        db.stop()
