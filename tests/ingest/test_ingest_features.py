"""Ingest features against the real broker and InfluxDB: partial writes, registry reload, dead-letter
bound, retention/CQs, metrics, a storm of invalid messages, spools left by a retired worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest

from core.influx import InfluxClient
from core.lineprotocol import to_line
from core.registry import ensure_registry, load_registry, write_registry
from core.settings import Settings
from core.validation import validate
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path
from ingest.metrics import render_prometheus
from ingest.retention import ROLLUP_POLICY, ensure_retention
from ingest.service import Ingestor
from ingest.spool import Spool
from smartcommunity.services import free_port
from tests.conftest import wait_until
from tests.ingest.conftest import count_gas, gas_devices, gas_messages


@pytest.fixture
def ingestor(settings: Settings, influx: InfluxClient) -> Iterator[Ingestor]:
    ing = Ingestor(settings)
    ing.start()
    assert wait_until(lambda: ing.mqtt_ok, 10)
    time.sleep(0.3)
    yield ing
    ing.close()


def test_field_type_conflict_deadletters_only_the_offender(settings: Settings, influx: InfluxClient,
                                                          ingestor: Ingestor, publisher) -> None:  # type: ignore[no-untyped-def]
    devs = gas_devices(settings, 50)
    bad = devs[0]
    now = int(time.time() * 1000)
    # Someone wrote co_ppm as an integer first: in InfluxDB 1.x a field's type is fixed per shard and
    # measurement, so any float co_ppm now conflicts. Only a few messages below carry co_ppm.
    influx.write(f"gas,community={bad.community},compound_id={bad.compound_id},device_id={bad.device_id},"
                 f"kind=gas co_ppm=5i {now - 10_000}".encode())
    msgs = gas_messages(devs, 200, now - 5_000)
    offenders = set(range(7, 200, 50))
    for i in offenders:
        topic, payload = msgs[i]
        body = orjson.loads(payload)
        body["m"]["co_ppm"] = 12.5
        msgs[i] = (topic, orjson.dumps(body))
    for topic, payload in msgs:
        publisher.publish(topic, payload, qos=1)
    assert wait_until(lambda: ingestor.counters["stored"] + ingestor.counters["deadlettered"] >= 200, 20)
    assert ingestor.counters["deadlettered"] == len(offenders)
    assert ingestor.counters["stored"] == 200 - len(offenders)
    assert count_gas(influx) == 200 - len(offenders)  # every good point of the same batches is stored
    store = DeadLetterStore(store_path(settings.data_path), 1000)
    letters = store.list()
    store.close()
    assert {d["reason"] for d in letters} == {"bad_value"}
    assert all("field type conflict" in d["detail"] for d in letters)
    assert sorted(d["payload"].encode() for d in letters) == sorted(msgs[i][1] for i in offenders)


def test_registry_reload_picks_up_imports(settings: Settings, influx: InfluxClient, ingestor: Ingestor,
                                          publisher) -> None:  # type: ignore[no-untyped-def]
    reg = dict(load_registry(ensure_registry(settings)))
    dev = gas_devices(settings, 1)[0]
    topic = f"sc/{dev.community}/gas/{dev.device_id}/telemetry"
    ts = int(time.time() * 1000)
    write_registry(settings.registry_path, [d for k, d in reg.items() if k != dev.device_id])
    assert wait_until(lambda: dev.device_id not in ingestor.registry.current(), 5)
    publisher.publish(topic, orjson.dumps({"ts": ts, "m": {"lel_pct": 1.0}}), qos=1)
    assert wait_until(lambda: ingestor.dead_by_reason["unknown_device"] == 1, 10)
    moved = replace(dev, compound_id="MOVED-01")
    write_registry(settings.registry_path, [*[d for k, d in reg.items() if k != dev.device_id], moved])
    assert wait_until(lambda: dev.device_id in ingestor.registry.current(), 5)
    publisher.publish(topic, orjson.dumps({"ts": ts + 1, "m": {"lel_pct": 2.0}}), qos=1)
    assert wait_until(lambda: ingestor.counters["stored"] >= 1, 10)
    rows = influx.rows(f"SELECT lel_pct, compound_id FROM gas WHERE device_id = '{dev.device_id}'")
    assert [(r["lel_pct"], r["compound_id"]) for r in rows] == [(2.0, "MOVED-01")]


def test_deadletter_store_is_bounded_oldest_first(settings: Settings) -> None:
    store = DeadLetterStore(store_path(settings.data_path), 10)
    for i in range(25):
        store.add_many([DeadLetter(f"t/{i}", b"x", "bad_json", "", 1_700_000_000_000 + i)])
    rows = store.list()
    assert [r["topic"] for r in rows] == [f"t/{i}" for i in range(24, 14, -1)]
    assert store.dropped() == 15
    store.close()


def test_retention_and_rollups_idempotent(settings: Settings, influx: InfluxClient, ingestor: Ingestor) -> None:
    assert wait_until(lambda: ingestor._retention_done, 10)
    assert ensure_retention(influx, settings.influx_raw_days, settings.influx_rollup_days)  # again: no error
    pols = {r["name"]: r for r in influx.rows(f"SHOW RETENTION POLICIES ON {influx.db}")}
    assert pols["autogen"]["duration"] == f"{settings.influx_raw_days * 24}h0m0s" and pols["autogen"]["default"]
    assert pols[ROLLUP_POLICY]["duration"] == f"{settings.influx_rollup_days * 24}h0m0s"
    cqs = [r["name"] for s in influx.query("SHOW CONTINUOUS QUERIES") if s.name == influx.db for r in s.rows()]
    assert sorted(cqs) == sorted(f"cq_rollup_1m_{k}" for k in ("gas", "water", "power", "camera"))
    # The CQ's SELECT is valid on this server: run it by hand into the rollup policy.
    dev = gas_devices(settings, 1)[0]
    t = (int(time.time()) // 60 - 2) * 60_000
    influx.write(f"gas,community={dev.community},compound_id={dev.compound_id},device_id={dev.device_id},"
                 f"kind=gas lel_pct=2.0,valve_open=true {t}\n"
                 f"gas,community={dev.community},compound_id={dev.compound_id},device_id={dev.device_id},"
                 f"kind=gas lel_pct=4.0,valve_open=false {t + 1000}".encode())
    influx.query(f"SELECT mean(*), min(*), max(*) INTO {influx.db}.{ROLLUP_POLICY}.gas FROM {influx.db}.autogen.gas "
                 f"WHERE time >= {t}ms AND time < {t + 60_000}ms GROUP BY time(1m), *", epoch=None)
    rows = influx.rows(f"SELECT * FROM {ROLLUP_POLICY}.gas")
    assert rows and rows[0]["mean_lel_pct"] == 3.0 and rows[0]["max_lel_pct"] == 4.0


def test_metrics_render(ingestor: Ingestor) -> None:
    text = render_prometheus([ingestor.snapshot() | {"name": "ingest-0", "fresh": True}])
    for name in ("sc_ingest_received_total", "sc_ingest_spooled_total", "sc_ingest_replayed_total",
                 "sc_ingest_spool_bytes", "sc_ingest_lag_seconds", 'sc_ingest_state{state="ok",worker="ingest-0"} 1'):
        assert name in text


INVALID = [  # (topic template, payload, reason): one of every contract reason
    ("sc/{c}/gas/{d}/nonsense", b'{"ts":1}', "bad_topic"),
    ("sc/{c}/gas/{d}/telemetry", b"{not json", "bad_json"),
    ("sc/{c}/gas/{d}/telemetry", b"[1,2]", "bad_payload"),
    ("sc/{c}/gas/{d}/telemetry", b'{"ts":"yesterday","m":{"lel_pct":1}}', "bad_timestamp"),
    ("sc/{c}/gas/{d}/telemetry", b'{"ts":%d,"m":{"lel_pct":500}}', "bad_value"),
    ("sc/{c}/gas/{d}/telemetry", b'{"ts":%d,"m":{"volts":1}}', "unknown_metric"),
    ("sc/atlantis/gas/{d}/telemetry", b'{"ts":%d,"m":{"lel_pct":1}}', "unknown_community"),
    ("sc/{c}/toaster/{d}/telemetry", b'{"ts":%d,"m":{"lel_pct":1}}', "unknown_kind"),
    ("sc/{c}/gas/NOPE-{d}/telemetry", b'{"ts":%d,"m":{"lel_pct":1}}', "unknown_device"),
]


def _drain(settings: Settings, msgs: list[tuple[str, bytes]], publisher, want: int) -> None:  # type: ignore[no-untyped-def]
    """Pre-fill the ingestor's session while it is away (as after an outage), then let it drain."""
    ing = Ingestor(settings)
    ing.start()
    assert wait_until(lambda: ing.mqtt_ok, 10)
    time.sleep(0.3)
    ing.close()
    infos = [publisher.publish(t, p, qos=1) for t, p in msgs]
    for info in infos:
        info.wait_for_publish(30)
    ing = Ingestor(settings)
    ing.start()
    try:
        assert wait_until(lambda: ing.counters["stored"] + ing.counters["deadlettered"] >= want, 60, 0.01)
    finally:
        ing.close()


def test_storm_of_invalid_messages(settings: Settings, influx: InfluxClient, publisher) -> None:  # type: ignore[no-untyped-def]
    devs = gas_devices(settings, 100)
    n = 6000
    now = int(time.time() * 1000)
    valid = gas_messages(devs, n, now - 60_000)
    _drain(settings, valid[: n // 2], publisher, n // 2)
    invalid = []
    for i in range(n // 2):
        tmpl, payload, _ = INVALID[i % len(INVALID)]
        d = devs[i % len(devs)]
        body = payload % (now - i) if b"%d" in payload else payload
        invalid.append((tmpl.format(c=d.community, d=d.device_id), body))
    mixed = [m for pair in zip(valid[n // 2 :], invalid, strict=True) for m in pair]  # 50 % invalid
    # How much valid throughput the storm costs is a speed figure: bench/bench_ingest.py phase (g).
    _drain(settings, mixed, publisher, n)
    assert count_gas(influx) == n  # every valid one stored, no invalid one
    store = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max)
    counts = store.counts()
    store.close()
    assert counts == {r: sum(1 for i in range(n // 2) if INVALID[i % len(INVALID)][2] == r) for _, _, r in INVALID}


def test_spool_of_a_worker_that_no_longer_runs_is_replayed(settings: Settings, influx: InfluxClient) -> None:
    """Went from --workers 3 to 1 while ingest-1 still had points spooled: worker 0 replays them; a
    spool still locked by a live process (ingest-2) is left to that process."""
    devs = gas_devices(settings, 20)
    registry = load_registry(settings.registry_path)
    now = int(time.time() * 1000)
    lines = [to_line(validate(t, p, registry, now)) for t, p in gas_messages(devs, 60, now - 60_000)]
    root = settings.data_path / "spool"
    left = Spool(root / "ingest-1", settings.spool_max_bytes)
    for i in range(0, 60, 20):
        left.append("\n".join(lines[i:i + 20]).encode())
    left.close()
    busy = Spool(root / "ingest-2", settings.spool_max_bytes)
    busy.append(b"gas,community=x,compound_id=x,device_id=x,kind=gas lel_pct=1 1")
    ing = Ingestor(settings, worker=0, workers=1)
    ing.start()
    try:
        assert wait_until(lambda: count_gas(influx) == 60 and not (root / "ingest-1").exists(), 20)
        assert ing.counters["replayed"] == 60
        assert not busy.empty() and (root / "ingest-2").exists()
    finally:
        ing.close()
        busy.close()


@pytest.mark.slow
def test_rollup_is_filled_by_the_cq_scheduler(settings: Settings, influx: InfluxClient, ingestor: Ingestor,
                                              publisher) -> None:  # type: ignore[no-untyped-def]
    """End to end: readings published through ingest land in `rollup_1m` by InfluxDB's own CQ
    scheduler, not by a query run by hand: first for a minute already past, then for the current
    minute, which only the next run at a minute boundary can cover."""
    dev = gas_devices(settings, 1)[0]
    topic = f"sc/{dev.community}/gas/{dev.device_id}/telemetry"
    assert wait_until(lambda: ingestor._retention_done, 20)  # the CQs exist

    def rolled(minute_ms: int) -> list[dict[str, object]]:
        return influx.rows(f"SELECT mean_lel_pct, max_lel_pct FROM {ROLLUP_POLICY}.gas "
                           f"WHERE device_id = '{dev.device_id}' AND time = {minute_ms}ms")

    now = int(time.time() * 1000)
    for minute, (a, b) in ((now // 60_000 * 60_000 - 60_000, (2.0, 6.0)), (None, (10.0, 20.0))):
        if minute is None:  # the current minute: both readings in it, the newest one second old
            now = int(time.time() * 1000)
            minute = (now - 1_000) // 60_000 * 60_000
            stamps = (minute, now - 1_000)
        else:
            stamps = (minute + 1_000, minute + 30_000)
        for ts, lel in zip(stamps, (a, b), strict=True):
            publisher.publish(topic, orjson.dumps({"ts": ts, "m": {"lel_pct": lel}}), qos=1).wait_for_publish(5)
        want = [{"time": minute, "mean_lel_pct": (a + b) / 2, "max_lel_pct": b}]
        # Equality, not presence: a run that fell between the two writes is corrected by the next one.
        assert wait_until(lambda m=minute, w=want: rolled(m) == w, 150, 2.0), (minute, rolled(minute))


def test_a_stalled_writer_holds_the_backlog_at_the_broker(settings: Settings, publisher) -> None:  # type: ignore[no-untyped-def]
    """Neither InfluxDB nor the spool can take anything: ingest reads a bounded amount and leaves the
    rest queued at the broker, instead of pulling a whole backlog into memory."""
    s = replace(settings, influx_url=f"http://127.0.0.1:{free_port()}", spool_max_bytes=1,  # nothing there
                ingest_batch_size=100, ingest_writers=1)
    devs = gas_devices(s, 50)
    ing = Ingestor(s)
    ing.start()
    try:
        assert wait_until(lambda: ing.mqtt_ok, 10)
        infos = [publisher.publish(t, p, qos=1) for t, p in gas_messages(devs, 5000, int(time.time() * 1000))]
        for info in infos:
            info.wait_for_publish(30)
        assert wait_until(lambda: ing.hold_reason is not None, 10)
        time.sleep(1.0)
        # At most a batch (100) in the writer, two queued, one waiting in the network thread and one
        # in the flusher: 500 at most, not 5,000.
        assert 0 < ing.counters["received"] <= 500, ing.counters
        assert ing.counters["stored"] == ing.counters["spooled"] == 0
    finally:
        ing.stop()
        ing.close()
