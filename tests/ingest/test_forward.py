"""ingest/forward.py: accepted records handed on in small batches, decoded back into the same records."""

from __future__ import annotations

import threading
import time

from core.contract import MAX_PAYLOAD_BYTES
from core.registry import bundled_registry_path, load_registry
from core.validation import Event, Status, Telemetry, validate
from ingest.forward import (
    FORWARD_MAX,
    FORWARD_MAX_BYTES,
    FORWARD_MS,
    Forwarder,
    community_of,
    decode,
    encode,
    records_topic,
)


def _devices():  # type: ignore[no-untyped-def]
    reg = load_registry(bundled_registry_path())
    return reg, sorted(reg.values(), key=lambda d: d.device_id)


def test_records_round_trip() -> None:
    reg, devs = _devices()
    gas = next(d for d in devs if d.kind == "gas")
    cam = next(d for d in devs if d.kind == "camera")
    now = int(time.time() * 1000)
    recs = [validate(f"sc/{gas.community}/gas/{gas.device_id}/telemetry",
                     b'{"ts": %d, "seq": 7, "m": {"lel_pct": 31, "valve_open": true}}' % now, reg, now),
            validate(f"sc/{cam.community}/camera/{cam.device_id}/status", b'{"state": "offline"}', reg, now),
            validate(f"sc/{cam.community}/camera/{cam.device_id}/event",
                     '{"ts": %d, "event": "tamper", "detail": "镜头被遮挡\\n"}'.encode() % now, reg, now)]
    assert [type(r) for r in recs] == [Telemetry, Status, Event]
    back, unknown = decode(encode(recs), reg)
    assert back == recs and unknown == 0
    assert isinstance(back[0].metrics["lel_pct"], float)  # as validate made it: 31 -> 31.0
    # A device the engine's registry does not hold (yet) is counted, not guessed.
    back, unknown = decode(encode(recs), {k: v for k, v in reg.items() if k != cam.device_id})
    assert back == recs[:1] and unknown == 2
    assert community_of(records_topic("yanhu")) == "yanhu" and community_of("sc/yanhu/gas/G-1/telemetry") is None


def test_batches_by_count_bytes_and_time_in_order() -> None:
    reg, devs = _devices()
    gas = [d for d in devs if d.kind == "gas" and d.community == "yanhu"]
    cam = next(d for d in devs if d.kind == "camera" and d.community == "yanhu")
    sent: list[tuple[str, bytes, float]] = []
    lock = threading.Lock()

    def publish(topic: str, payload: bytes) -> None:
        with lock:
            sent.append((topic, payload, time.monotonic()))

    fw = Forwarder(publish)
    fw.start()
    try:
        now = int(time.time() * 1000)
        recs = [Telemetry(gas[i % len(gas)], now + i, i, {"lel_pct": 1.0}) for i in range(FORWARD_MAX + 10)]
        for r in recs:
            fw.add(r, 60)
        # A full batch (by count, or by size first) goes at once, without waiting for the timer.
        assert len(sent) >= 1 and 100 <= len(orjson_rows(sent[0][1])) <= FORWARD_MAX
        assert len(sent[0][1]) <= FORWARD_MAX_BYTES
        t_add = time.monotonic()
        assert _wait(lambda: sum(len(orjson_rows(p)) for _, p, _ in sent) == len(recs))
        assert sent[-1][2] - t_add < FORWARD_MS / 1000 + 0.25  # the rest within about FORWARD_MS
        got = [r for _, p, _ in sent for r in decode(p, reg)[0]]
        assert got == recs and {t for t, _, _ in sent} == {records_topic("yanhu")}

        # Events with 4,096-character details: cut by size, every batch under the secure broker's 64 KiB.
        sent.clear()
        big = [Event(cam, now + i, "tamper", "遮" * 4096) for i in range(40)]
        for e in big:
            fw.add(e, MAX_PAYLOAD_BYTES)
        assert _wait(lambda: sum(len(orjson_rows(p)) for _, p, _ in sent) == len(big))
        assert len(sent) > 1 and max(len(p) for _, p, _ in sent) < 64 * 1024
        assert [r for _, p, _ in sent for r in decode(p, reg)[0]] == big
    finally:
        fw.stop()


def orjson_rows(payload: bytes) -> list[object]:
    import orjson

    return list(orjson.loads(payload))


def _wait(pred, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
