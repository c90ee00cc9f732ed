"""What the fuzzers check, shared by the hypothesis tests and the atheris script (fuzz_ingest.py).

`check_message`: one (topic, payload) through validate() and to_line(): only `Rejected` may come
out; an accepted message gives one line whose tags are exactly the device's, whose fields are
metrics the contract allows for its kind, in range, at a ts inside the contract's window.
`parse_line`: a strict reader of the InfluxDB 1.x line protocol as the server reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from core.contract import MAX_FUTURE_MS, MAX_PAST_MS, METRICS, Device, Reason
from core.lineprotocol import EVENT_MEASUREMENT, STATUS_MEASUREMENT, split_lines, to_line
from core.validation import Event, Rejected, Status, Telemetry, validate

SEEDS = Path(__file__).resolve().parent / "seeds"
NOW_MS = 1_764_040_000_123
TAG_KEYS = {"community", "compound_id", "device_id", "kind"}


def _split_unescaped(s: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in ", =":
            cur.append(s[i:i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(s: str) -> str:
    return s.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """(measurement, tags, fields, ts) the way InfluxDB 1.x reads one line; AssertionError if it
    would not read it as exactly one point."""
    assert split_lines(line) == [line], "a line break splits the point"
    # key section ends at the first unescaped space
    head_end = None
    i = 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in ", =":
            i += 2
            continue
        if line[i] == " ":
            head_end = i
            break
        i += 1
    assert head_end is not None, "no field section"
    head, rest = line[:head_end], line[head_end + 1:]
    assert "\n" not in head and "\r" not in head, "a line break in the key section"
    parts = _split_unescaped(head, ",")
    meas, tags = _unescape(parts[0]), {}
    for t in parts[1:]:
        kv = _split_unescaped(t, "=")
        assert len(kv) == 2, f"bad tag {t!r}"
        assert not kv[1].endswith("\\"), f"tag value {kv[1]!r} ends in a backslash (eats the separator)"
        tags[_unescape(kv[0])] = _unescape(kv[1])
    fields_s, _, ts_s = rest.rpartition(" ")
    assert ts_s.lstrip("-").isdigit(), f"bad timestamp {ts_s!r}"
    fields: dict[str, object] = {}
    j = 0
    while j < len(fields_s):
        k_end = j
        while fields_s[k_end] != "=" or fields_s[k_end - 1] == "\\":
            k_end += 1
        key = _unescape(fields_s[j:k_end])
        v_start = k_end + 1
        if fields_s[v_start] == '"':
            v_end = v_start + 1
            buf = []
            while fields_s[v_end] != '"':
                if fields_s[v_end] == "\\" and fields_s[v_end + 1] in '"\\':
                    buf.append(fields_s[v_end + 1])
                    v_end += 2
                    continue
                buf.append(fields_s[v_end])
                v_end += 1
            fields[key] = "".join(buf)
            j = v_end + 1
        else:
            v_end = fields_s.find(",", v_start)
            v_end = len(fields_s) if v_end < 0 else v_end
            raw = fields_s[v_start:v_end]
            fields[key] = {"true": True, "false": False}.get(raw)
            if fields[key] is None:
                fields[key] = float(raw)
            j = v_end
        if j < len(fields_s):
            assert fields_s[j] == ",", f"junk after a field at {j}: {fields_s[j:j + 20]!r}"
            j += 1
    return meas, tags, fields, int(ts_s)


def stored_tag(value: str) -> str:
    """A tag value as InfluxDB keeps it: line breaks and tabs as the two characters `\\n` etc.,
    and a backslash as ＼ (U+FF3C): InfluxDB 1.x cannot read a tag value that ends in one."""
    return value.replace("\\", "＼").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def check_line(rec: Telemetry | Status | Event, line: str, now_ms: int) -> None:
    meas, tags, fields, ts = parse_line(line)
    d = rec.device
    want_tags = {"community": d.community, "compound_id": stored_tag(d.compound_id),
                 "device_id": d.device_id, "kind": d.kind}
    assert now_ms - MAX_PAST_MS <= ts <= now_ms + MAX_FUTURE_MS
    if isinstance(rec, Telemetry):
        assert meas == d.kind and tags == want_tags, (meas, tags)
        specs = METRICS[d.kind]
        assert fields and set(fields) <= set(specs), fields
        for k, v in fields.items():
            spec = specs[k]
            if spec.is_bool:
                assert isinstance(v, bool)
            else:
                assert isinstance(v, float) and math.isfinite(v) and spec.lo is not None and spec.hi is not None
                assert spec.lo <= v <= spec.hi
    elif isinstance(rec, Status):
        assert meas == STATUS_MEASUREMENT and tags == want_tags
        assert fields["state"] in ("online", "offline") and set(fields) == {"state", "online"}
    else:
        assert meas == EVENT_MEASUREMENT
        assert {k: v for k, v in tags.items() if k != "event"} == want_tags and tags["event"] == rec.event
        assert set(fields) == {"detail"}
        assert fields["detail"] == rec.detail


def check_message(topic: str, payload: bytes, registry: Mapping[str, Device], now_ms: int = NOW_MS) -> str | None:
    """The reason it was refused, or None when accepted (and its line checked)."""
    try:
        rec = validate(topic, payload, registry, now_ms)
    except Rejected as r:
        assert isinstance(r.reason, Reason)
        return str(r.reason)
    check_line(rec, to_line(rec), now_ms)
    return None


def fuzz_registry() -> dict[str, Device]:
    """Devices of every kind, one with a hostile compound id (the registry allows any string)."""
    devs = [Device("G-000001", "gas", "yanling", "YL-01", 10, 110.79, 32.65),
            Device("W-000001", "water", "yanhu", "YH 02,x=1\\", 10, 110.79, 32.65),
            Device("P-000001", "power", "lanshanjun", "LSJ=03\n", 10, 110.79, 32.65),
            Device("C-000001", "camera", "gongyixincun", 'GY"04 ', 10, 110.79, 32.65)]
    return {d.device_id: d for d in devs}


def load_seeds() -> list[tuple[str, bytes]]:
    """Seeds of interest: one file each, first line the topic, the rest the payload bytes."""
    out = []
    for f in sorted(SEEDS.glob("*.seed")):
        raw = f.read_bytes()
        topic, _, payload = raw.partition(b"\n")
        out.append((topic.decode("utf-8", "replace"), payload))
    return out
