"""Ingest against the contract's examples, with the real broker and the real InfluxDB."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from core.contract import Device
from core.influx import InfluxClient
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from ingest.deadletter import DeadLetterStore, store_path
from ingest.service import Ingestor
from tests.conftest import CONTRACT_EXAMPLES, wait_until

PLACEHOLDER_KINDS = {"G-000001": "gas", "W-000010": "water", "P-000100": "power", "C-000200": "camera"}


def load_examples(name: str) -> list[dict[str, Any]]:
    lines = (CONTRACT_EXAMPLES / name).read_text(encoding="utf-8").splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def device_map(settings: Settings) -> dict[tuple[str, str], Device]:
    """A real registry device for each (community, kind) of the placeholders."""
    reg = load_registry(ensure_registry(settings))
    out: dict[tuple[str, str], Device] = {}
    for d in sorted(reg.values(), key=lambda d: d.device_id):
        out.setdefault((d.community, d.kind), d)
    return out


def materialise(
    example: dict[str, Any], devices: dict[tuple[str, str], Device], age_s: int = 0
) -> tuple[str, bytes, Device | None]:
    """Map placeholder ids onto registry devices and shift fixed ts values to `age_s` before now."""
    parts = example["topic"].split("/")
    dev = None
    if len(parts) == 5 and parts[3] in PLACEHOLDER_KINDS:
        dev = devices.get((parts[1], PLACEHOLDER_KINDS[parts[3]]))
        if dev is not None:
            parts[3] = dev.device_id
    payload = example["payload"]
    if isinstance(payload, str):
        return "/".join(parts), payload.encode(), dev
    payload = dict(payload)
    ts = payload.get("ts")
    now_ms = int(time.time() * 1000) - age_s * 1000
    if isinstance(ts, int) and ts == 1764040000123:
        payload["ts"] = now_ms
    elif isinstance(ts, str):  # keep the example's offset
        off = ts[-6:]
        sign = 1 if off[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
        payload["ts"] = datetime.fromtimestamp(now_ms / 1000, tz).isoformat(timespec="milliseconds")
    return "/".join(parts), orjson.dumps(payload), dev


@pytest.fixture
def ingestor(settings: Settings, influx: InfluxClient) -> Iterator[Ingestor]:
    ing = Ingestor(settings)
    ing.start()
    assert wait_until(lambda: ing.mqtt_ok, 10)
    time.sleep(0.3)  # subscription settles
    yield ing
    ing.close()


def count_points(influx: InfluxClient) -> int:
    total = 0
    for meas in ("gas", "water", "power", "camera", "device_status", "device_event"):
        for s in influx.query(f'SELECT count(*) FROM "{meas}"'):
            total += max(v for v in s.values[0][1:] if v is not None)
    return total


def test_contract_examples(settings: Settings, influx: InfluxClient, ingestor: Ingestor, publisher) -> None:  # type: ignore[no-untyped-def]
    devices = device_map(settings)
    valid = [materialise(e, devices, age_s=i) for i, e in enumerate(load_examples("valid.jsonl"))]
    invalid = [(materialise(e, devices), e["reason"]) for e in load_examples("invalid.jsonl")]
    for topic, payload, _ in valid:
        publisher.publish(topic, payload, qos=1).wait_for_publish(5)
    for (topic, payload, _), _reason in invalid:
        publisher.publish(topic, payload, qos=1).wait_for_publish(5)

    n = len(valid) + len(invalid)
    assert wait_until(lambda: ingestor.counters["received"] >= n and
                      ingestor.counters["stored"] + ingestor.counters["deadlettered"] >= n, 15)

    # Valid ones: stored with the contract's tags, one field per metric.
    for topic, payload, dev in valid:
        assert dev is not None
        doc = orjson.loads(payload)
        msg_type = topic.rsplit("/", 1)[1]
        meas = {"telemetry": dev.kind, "status": "device_status", "event": "device_event"}[msg_type]
        rows = influx.rows(f"SELECT * FROM \"{meas}\" WHERE device_id = '{dev.device_id}'")
        assert rows, f"nothing stored for {topic}"
        row = rows[-1]
        assert row["community"] == dev.community
        assert row["kind"] == dev.kind
        assert row["compound_id"] == dev.compound_id
        if msg_type == "telemetry":
            match = [r for r in rows if all(r.get(k) == (v if isinstance(v, bool) else float(v))
                                            for k, v in doc["m"].items())]
            assert match, f"{doc['m']} not among {rows}"

    # Invalid ones: dead-lettered with the expected reason and nothing of them stored.
    store = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max)
    letters = store.list()
    store.close()
    got = sorted((d["topic"], d["reason"]) for d in letters)
    want = sorted((topic, reason) for (topic, _, _), reason in invalid)
    assert got == want
    assert count_points(influx) == len(valid)


def test_duplicate_delivery_stored_once(settings: Settings, influx: InfluxClient, ingestor: Ingestor,
                                        publisher) -> None:  # type: ignore[no-untyped-def]
    dev = device_map(settings)[("yanling", "gas")]
    ts = int(time.time() * 1000)
    payload = orjson.dumps({"ts": ts, "seq": 5, "m": {"lel_pct": 2.5}})
    topic = f"sc/yanling/gas/{dev.device_id}/telemetry"
    for _ in range(3):
        publisher.publish(topic, payload, qos=1).wait_for_publish(5)
    assert wait_until(lambda: ingestor.counters["stored"] >= 3, 10)
    rows = influx.rows(f"SELECT lel_pct FROM gas WHERE device_id = '{dev.device_id}'")
    assert len(rows) == 1
    assert rows[0]["time"] == ts


def test_deadletter_cli_lists_json(settings: Settings, ingestor: Ingestor, publisher, monkeypatch,
                                   capsys) -> None:  # type: ignore[no-untyped-def]
    from smartcommunity.cli import main

    dev = device_map(settings)[("yanling", "gas")]  # registered: identity is checked before content
    publisher.publish(f"sc/yanling/gas/{dev.device_id}/telemetry", b"\xff\xfe garbage", qos=1).wait_for_publish(5)
    assert wait_until(lambda: ingestor.counters["deadlettered"] >= 1, 10)
    for k, v in settings.env().items():
        monkeypatch.setenv(k, v)
    assert main(["deadletter", "list", "--json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert rows[0]["reason"] == "bad_json"
    assert {"topic", "payload", "reason", "received_at"} <= set(rows[0])
    assert rows[0]["payload_base64"]


def test_ingest_survives_concurrent_load(settings: Settings, influx: InfluxClient, ingestor: Ingestor,
                                         publisher) -> None:  # type: ignore[no-untyped-def]
    """Many devices, interleaved garbage: every valid point stored, every bad one counted."""
    devices = [d for d in load_registry(ensure_registry(settings)).values() if d.kind == "power"][:200]
    base = int(time.time() * 1000) - 60_000
    sent_ok = 0

    def send() -> None:
        nonlocal sent_ok
        for i, d in enumerate(devices):
            for k in range(5):
                p = {"ts": base + k * 1000 + i, "m": {"voltage_v": 220.0 + k, "temp_c": 40.5}}
                publisher.publish(f"sc/{d.community}/power/{d.device_id}/telemetry", orjson.dumps(p), qos=1)
                sent_ok += 1
            publisher.publish(f"sc/{d.community}/power/{d.device_id}/telemetry", b"{", qos=1)

    t = threading.Thread(target=send)
    t.start()
    t.join()
    total = sent_ok + len(devices)
    assert wait_until(lambda: ingestor.counters["stored"] + ingestor.counters["deadlettered"] >= total, 30)
    rows = influx.query("SELECT count(voltage_v) FROM power")
    assert rows[0].values[0][1] == sent_ok
    assert ingestor.dead_by_reason["bad_json"] == len(devices)
