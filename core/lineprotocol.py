"""InfluxDB line protocol for accepted records, with the escaping rules of the v1 write API.

Measurements: `gas`, `water`, `power`, `camera` (telemetry, one field per metric),
`device_status` (field `state`), `device_event` (tag `event`, field `detail`).
Tags on every point: device_id, community, kind, compound_id. Time: the payload's ts in ms.
"""

from __future__ import annotations

from core.validation import Event, Record, Status, Telemetry

STATUS_MEASUREMENT = "device_status"
EVENT_MEASUREMENT = "device_event"

# A backslash in a tag value becomes ＼ (U+FF3C): InfluxDB 1.x reads `\` literally but cannot read a tag
# value that ends in one (it would escape the next separator and swallow the following tag).
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t",
                              "\\": "\uff3c"})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})


def escape_key(s: str) -> str:
    """Tag keys, tag values and field keys: escape comma, equals and space; line breaks and tabs as
    the two characters `\\n`...; a backslash as ＼. Ids come from the contract's alphabets, but a
    registry's compound_id may hold anything: fuzzed in tests/security/test_fuzz.py."""
    return s.translate(_KEY_ESCAPES)


def escape_measurement(s: str) -> str:
    return s.translate(_MEAS_ESCAPES)


def escape_string_field(s: str) -> str:
    """String field values: quote, escaping backslash and double quote. A line break stays as it is
    (InfluxDB reads it inside the quotes; so does `split_lines`, which the spool replay uses)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_lines(body: str) -> list[str]:
    """Split a batch of our lines into points: at line breaks outside quoted string fields.

    Keys and tag values never hold a raw line break (`escape_key`), so only the field section, after
    the first unescaped space, can have quotes; inside them, backslash escapes the next character.
    """
    if "\"" not in body:
        return body.split("\n")
    out: list[str] = []
    start = i = 0
    n = len(body)
    in_fields = in_quote = False
    while i < n:
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if in_quote:
            if ch == '"':
                in_quote = False
        elif ch == "\n":
            out.append(body[start:i])
            start = i + 1
            in_fields = False
        elif in_fields:
            if ch == '"':
                in_quote = True
        elif ch == " ":
            in_fields = True
        i += 1
    out.append(body[start:])
    return out


def field_value(v: float | bool | int | str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return escape_string_field(v)
    # Always float: a device that sends 18 and later 18.5 must not cause a field type conflict.
    return repr(float(v))


def _tags(rec: Record, extra: str = "") -> str:
    d = rec.device
    return (
        f",community={escape_key(d.community)},compound_id={escape_key(d.compound_id)}"
        f",device_id={escape_key(d.device_id)}{extra},kind={escape_key(d.kind)}"
    )


# Hot path (ingest renders tens of thousands of lines a second): the measurement + tag prefix of a
# device is the same for every message, so it is built once per Device object (keyed by identity,
# so a reloaded registry's new Device objects get fresh entries; bounded by a periodic clear).
_PREFIX_CACHE: dict[int, tuple[object, str]] = {}
_PREFIX_CACHE_MAX = 1_000_000
_FIELD_KEYS: dict[str, str] = {}  # metric name -> escaped field key


def _telemetry_prefix(rec: Telemetry) -> str:
    d = rec.device
    hit = _PREFIX_CACHE.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    if len(_PREFIX_CACHE) >= _PREFIX_CACHE_MAX:
        _PREFIX_CACHE.clear()
    prefix = escape_measurement(d.kind) + _tags(rec)
    _PREFIX_CACHE[id(d)] = (d, prefix)
    return prefix


def _field(k: str, v: float | bool | int | str) -> str:
    key = _FIELD_KEYS.get(k)
    if key is None:
        key = escape_key(k)
        if len(_FIELD_KEYS) < 10_000:
            _FIELD_KEYS[k] = key
    if v.__class__ is float:
        return f"{key}={v!r}"
    return f"{key}={field_value(v)}"


def to_line(rec: Record) -> str:
    """One line of line protocol (no trailing newline) for an accepted record."""
    if isinstance(rec, Telemetry):
        fields = ",".join([_field(k, v) for k, v in rec.metrics.items()])
        return f"{_telemetry_prefix(rec)} {fields} {rec.ts_ms}"
    if isinstance(rec, Status):
        return (
            f"{STATUS_MEASUREMENT}{_tags(rec)} state={escape_string_field(rec.state)},"
            f"online={field_value(rec.state == 'online')} {rec.ts_ms}"
        )
    if isinstance(rec, Event):
        return (
            f"{EVENT_MEASUREMENT}{_tags(rec, ',event=' + escape_key(rec.event))} "
            f"detail={escape_string_field(rec.detail)} {rec.ts_ms}"
        )
    raise TypeError(f"not a record: {rec!r}")
