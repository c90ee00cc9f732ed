"""Bad input, tried for real (issue 12): hypothesis over the payload validator, topic parsing and
the line-protocol encoder (short, in the default suite), the kept seeds, and atheris for long runs
(`slow`; the script is tests/security/fuzz_ingest.py). What "no harm" means is in fuzzlib.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.contract import COMMUNITIES, KINDS, METRICS, Device
from core.lineprotocol import split_lines, to_line
from core.validation import Event, Status, Telemetry, parse_topic
from tests.security.fuzzlib import NOW_MS, check_line, check_message, fuzz_registry, load_seeds, parse_line

REG = fuzz_registry()
DEVS = list(REG.values())
HERE = Path(__file__).resolve().parent
FAST = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                         st.text(max_size=30))
_json = st.recursive(_json_scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c,
                                                                                        max_size=4), max_leaves=12)


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[str, bytes]:
    """Messages close to valid ones: real devices and metric names, hostile values and shapes."""
    dev = draw(st.sampled_from(DEVS))
    community = draw(st.sampled_from([dev.community, *COMMUNITIES, "x", ""]))
    kind = draw(st.sampled_from([dev.kind, *KINDS, "gas/x"]))
    mtype = draw(st.sampled_from(["telemetry", "status", "event", "telemetry/x", "#"]))
    topic = f"sc/{community}/{kind}/{dev.device_id}/{mtype}"
    names = [*list(METRICS[dev.kind]), "lel_pct", "x", ""]
    metrics = draw(st.dictionaries(st.sampled_from(names), _json_scalar, max_size=4))
    ts = draw(st.one_of(st.integers(NOW_MS - 8 * 86_400_000, NOW_MS + 2 * 86_400_000), _json_scalar,
                        st.sampled_from(["2025-11-25T03:06:40.123+08:00", "2025-11-25T03:06:40Z",
                                         "2025-13-01T00:00:00Z"])))
    doc: dict[str, object] = {"ts": ts, "m": metrics}
    if draw(st.booleans()):
        doc["seq"] = draw(_json_scalar)
    if mtype == "status":
        doc = {"ts": ts, "state": draw(st.sampled_from(["online", "offline", "on", None]))}
        if draw(st.booleans()):
            del doc["ts"]
    if mtype == "event":
        doc = {"ts": ts, "event": draw(st.sampled_from(["reboot", "tamper", "motion", "x"])),
               "detail": draw(st.one_of(st.text(max_size=60), _json_scalar))}
    try:
        raw = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        raw = repr(doc).encode()
    if draw(st.booleans()):
        raw = raw.replace(b"0.0", b"NaN", 1).replace(b"1.0", b"Infinity", 1)
    return topic, raw


@FAST
@given(st.text(max_size=80), st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_rejected(topic: str, payload: bytes) -> None:
    check_message(topic, payload, REG)


@FAST
@given(near_valid())
@example(("sc/yanhu/water/W-000001/telemetry", b'{"ts": 1764040000123, "m": {"leak": true}}'))
@example(("sc/gongyixincun/camera/C-000001/event",
          b'{"ts": 1764040000123, "event": "tamper", "detail": "a\\nb\\\\\\" c=d,e"}'))
def test_near_valid_messages_never_write_a_forbidden_point(msg: tuple[str, bytes]) -> None:
    check_message(*msg, REG)


@FAST
@given(st.text(max_size=120))
def test_topic_parsing_total(topic: str) -> None:
    from core.validation import Rejected

    try:
        t = parse_topic(topic)
    except Rejected:
        return
    assert topic == f"sc/{t.community}/{t.kind}/{t.device_id}/{t.msg_type}"
    assert t.community in COMMUNITIES and t.kind in KINDS


@FAST
@given(st.text(max_size=40), st.text(max_size=200))
def test_hostile_registry_values_and_event_text_cannot_escape_their_tags(compound: str, detail: str) -> None:
    """The registry allows any compound_id and events any detail: whatever they hold, each point
    keeps exactly its four tags (plus `event`) and one line."""
    d = Device("C-000009", "camera", "yanhu", compound, 10, 0, 0)
    recs = (Telemetry(d, NOW_MS, None, {"fps": 25.0}), Status(d, NOW_MS, "online", False),
            Event(d, NOW_MS, "tamper", detail), Event(d, NOW_MS, "motion", detail[::-1]))
    lines = [to_line(rec) for rec in recs]
    for rec, line in zip(recs, lines, strict=True):
        check_line(rec, line, NOW_MS)
    assert split_lines("\n".join(lines)) == lines  # the spool replays a batch point by point


def test_seeds_of_interest() -> None:
    seeds = load_seeds()
    assert len(seeds) >= 10
    reasons = [check_message(t, p, REG) for t, p in seeds]
    assert None in reasons and any(r for r in reasons)  # the kept seeds cover both outcomes


def test_hostile_lines_are_read_by_the_real_influxdb_as_we_expect(influx) -> None:  # type: ignore[no-untyped-def]
    """The strict reader in fuzzlib agrees with InfluxDB itself on the hostile values."""
    now = int(time.time() * 1000)
    d = Device("C-000009", "camera", "yanhu", 'YH,x=1 \\', 10, 0, 0)
    rec = Event(d, now, "tamper", 'two\nlines, "quoted" \\ end\\')
    line = to_line(rec)
    _, tags, fields, _ = parse_line(line)
    influx.write(line.encode())
    (row,) = influx.rows("SELECT * FROM device_event")
    assert row["compound_id"] == tags["compound_id"] and row["device_id"] == "C-000009"
    assert row["detail"] == fields["detail"] and row["event"] == "tamper"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_long_run(tmp_path: Path) -> None:
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "seeds", corpus)  # libFuzzer adds to its first directory: not the repo's
    r = subprocess.run([sys.executable, str(HERE / "fuzz_ingest.py"), "-runs=100000", "-max_len=2048",
                        f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", str(corpus)],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Done 100000 runs" in r.stderr or "DONE" in r.stderr


@FAST
@given(st.integers(900, 7000), st.sampled_from([b"NaN", b"Infinity", b"1", b'"x"']))
def test_deep_nesting_is_bad_json_not_a_crash(depth: int, inner: bytes) -> None:
    payload = b'{"ts": 1764040000123, "m": {"lel_pct": ' + b"[" * depth + inner + b"]" * depth + b"}}"
    # Python's json reads up to ~1,000 levels (a list is then a bad_value); deeper is bad_json
    assert check_message("sc/yanling/gas/G-000001/telemetry", payload, REG) in ("bad_json", "bad_value")


def test_ingest_survives_the_fuzzers_finds(settings, influx, publisher) -> None:  # type: ignore[no-untyped-def]
    """Every kept seed through the real broker into a real ingestor: nothing stops it, and a valid
    message sent after them is stored."""
    from ingest.service import Ingestor
    from tests.conftest import wait_until

    ing = Ingestor(settings)
    ing.start()
    try:
        assert wait_until(lambda: ing.mqtt_ok, 10)
        time.sleep(0.3)
        dev = next(d for _, d in sorted(ing.registry.current().items()) if d.kind == "gas")
        seeds = load_seeds()
        for topic, payload in seeds:
            real = topic.replace("sc/yanling/gas/G-000001/", f"sc/{dev.community}/gas/{dev.device_id}/")
            publisher.publish(real, payload, qos=1)
        ts = int(time.time() * 1000)
        publisher.publish(f"sc/{dev.community}/gas/{dev.device_id}/telemetry",
                          orjson.dumps({"ts": ts, "m": {"lel_pct": 4.5}}), qos=1)
        assert wait_until(lambda: ing.counters["received"] >= len(seeds) + 1, 20), ing.counters
        assert wait_until(lambda: influx.rows(f"SELECT lel_pct FROM gas WHERE time = {ts}ms"), 10)
        assert wait_until(lambda: ing.dead_by_reason["bad_json"] >= 3, 10), dict(ing.dead_by_reason)
    finally:
        ing.close()
