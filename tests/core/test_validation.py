"""validate() rule by rule, and the line protocol escaping checked against the real InfluxDB."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.contract import Device, Reason
from core.influx import InfluxClient
from core.lineprotocol import to_line
from core.validation import Event, Rejected, Status, Telemetry, parse_ts, validate

DEV = Device("G-000001", "gas", "yanling", "YL-01", 10, 110.79, 32.65)
REG = {DEV.device_id: DEV}
NOW = 1_764_040_000_123
TOPIC = "sc/yanling/gas/G-000001/telemetry"


def reason(topic: str, payload: bytes) -> Reason:
    with pytest.raises(Rejected) as e:
        validate(topic, payload, REG, NOW)
    return e.value.reason


@pytest.mark.parametrize(("topic", "want"), [
    ("sc/yanling/gas/G-000001", Reason.BAD_TOPIC),
    ("sc/yanling/gas/G-000001/telemetry/x", Reason.BAD_TOPIC),
    ("xx/yanling/gas/G-000001/telemetry", Reason.BAD_TOPIC),
    ("sc/yanling/gas/G 1;DROP/telemetry", Reason.BAD_TOPIC),
    ("sc/yanling/gas/G-000001/command", Reason.BAD_TOPIC),
    ("sc/yanling/gas/-G1/telemetry", Reason.BAD_TOPIC),
    ("sc/atlantis/gas/G-000001/telemetry", Reason.UNKNOWN_COMMUNITY),
    ("sc/yanling/nuclear/G-000001/telemetry", Reason.UNKNOWN_KIND),
    ("sc/yanhu/gas/G-000001/telemetry", Reason.UNKNOWN_DEVICE),
    ("sc/yanling/water/G-000001/telemetry", Reason.UNKNOWN_DEVICE),
])
def test_topics(topic: str, want: Reason) -> None:
    assert reason(topic, orjson.dumps({"ts": NOW, "m": {"lel_pct": 1}})) == want


@pytest.mark.parametrize(("payload", "want"), [
    (b"\xff\xfe", Reason.BAD_JSON),
    (b'{"ts": 1, "m": ', Reason.BAD_JSON),
    (b'{"ts": %d, "m": {"lel_pct": 1}, "pad": "%s"}' % (NOW, b"x" * 17000), Reason.BAD_JSON),
    (b"[1, 2]", Reason.BAD_PAYLOAD),
    (b'{"ts": %d}' % NOW, Reason.BAD_PAYLOAD),
    (b'{"ts": %d, "m": []}' % NOW, Reason.BAD_PAYLOAD),
    (b'{"ts": %d, "seq": -1, "m": {"lel_pct": 1}}' % NOW, Reason.BAD_PAYLOAD),
    (b'{"ts": "yesterday", "m": {"lel_pct": 1}}', Reason.BAD_TIMESTAMP),
    (b'{"ts": "2026-11-25T03:12:00", "m": {"lel_pct": 1}}', Reason.BAD_TIMESTAMP),  # no offset
    (b'{"ts": %d, "m": {"lel_pct": 1}}' % (NOW - 8 * 86400_000), Reason.BAD_TIMESTAMP),
    (b'{"ts": %d, "m": {"lel_pct": 1}}' % (NOW + 25 * 3600_000), Reason.BAD_TIMESTAMP),
    (b'{"ts": true, "m": {"lel_pct": 1}}', Reason.BAD_TIMESTAMP),
    (b'{"ts": %d, "m": {"lel_pct": NaN}}' % NOW, Reason.BAD_VALUE),
    (b'{"ts": %d, "m": {"lel_pct": Infinity}}' % NOW, Reason.BAD_VALUE),
    (b'{"ts": %d, "m": {"lel_pct": -0.1}}' % NOW, Reason.BAD_VALUE),
    (b'{"ts": %d, "m": {"lel_pct": true}}' % NOW, Reason.BAD_VALUE),
    (b'{"ts": %d, "m": {"valve_open": 1}}' % NOW, Reason.BAD_VALUE),
    (b'{"ts": %d, "m": {"fps": 25}}' % NOW, Reason.UNKNOWN_METRIC),
])
def test_payloads(payload: bytes, want: Reason) -> None:
    assert reason(TOPIC, payload) == want


def test_accepts_both_timestamp_forms() -> None:
    assert parse_ts("2026-11-25T03:12:00.123+08:00") == parse_ts("2026-11-24T19:12:00.123Z")
    assert parse_ts("2026-11-24T19:12:00.123456789Z") == parse_ts(1795547520123)  # calendar.timegm of that instant
    rec = validate(TOPIC, b'{"ts": %d, "seq": 3, "m": {"lel_pct": 3, "valve_open": true}}' % NOW, REG, NOW)
    assert isinstance(rec, Telemetry) and rec.metrics == {"lel_pct": 3.0, "valve_open": True}


def test_status_will_and_events() -> None:
    rec = validate("sc/yanling/gas/G-000001/status", b'{"state": "offline"}', REG, NOW)
    assert isinstance(rec, Status) and rec.from_will and rec.ts_ms == NOW
    assert reason("sc/yanling/gas/G-000001/status", b'{"state": "asleep"}') == Reason.BAD_PAYLOAD
    rec = validate("sc/yanling/gas/G-000001/event", b'{"ts": %d, "event": "reboot"}' % NOW, REG, NOW)
    assert isinstance(rec, Event) and rec.detail == ""
    # A camera event from a gas detector is not a gas detector's event.
    assert reason("sc/yanling/gas/G-000001/event", b'{"ts": %d, "event": "tamper"}' % NOW) == Reason.BAD_PAYLOAD


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(detail=st.text(max_size=200), compound=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,20}\Z"))
def test_line_protocol_round_trips_through_influxdb(influx: InfluxClient, detail: str, compound: str) -> None:
    """Whatever the text, what InfluxDB stores is exactly what the device sent."""
    detail = detail.replace("\x00", "")
    dev = Device("C-9", "camera", "yanhu", compound, 30, 110.79, 32.65)
    ts = int(time.time() * 1000)
    influx.write(to_line(Event(dev, ts, "tamper", detail)).encode())
    rows = influx.rows(f"SELECT * FROM device_event WHERE time = {ts}ms AND compound_id = '{compound}'")
    assert rows and rows[0]["detail"] == detail and rows[0]["event"] == "tamper"
    influx.query("DROP SERIES FROM device_event", epoch=None)


def test_gzip_write_is_stored_like_plain(influx: InfluxClient) -> None:
    """SC_INGEST_GZIP: a compressed body is accepted by the real InfluxDB and stores the same points."""
    dev = Device("G-7", "gas", "yanling", "YL-01", 10, 110.79, 32.65)
    ts = int(time.time() * 1000)
    lines = [to_line(Telemetry(dev, ts - i, None, {"lel_pct": float(i % 100)})) for i in range(500)]
    influx.write("\n".join(lines).encode(), gzip=True)
    rows = influx.rows("SELECT count(lel_pct), sum(lel_pct) FROM gas WHERE device_id = 'G-7'")
    assert rows[0]["count"] == 500 and rows[0]["sum"] == sum(float(i % 100) for i in range(500))
