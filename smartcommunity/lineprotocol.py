"""InfluxDB line protocol for accepted records, with the escaping rules of the v1 write API.

Measurements: `gas`, `water`, `power`, `camera` (telemetry, one field per metric),
`device_status` (field `state`), `device_event` (tag `event`, field `detail`).
Tags on every point: device_id, community, kind, compound_id. Time: the payload's ts in ms.
"""

from __future__ import annotations

from smartcommunity.validation import Event, Record, Status, Telemetry

STATUS_MEASUREMENT = "device_status"
EVENT_MEASUREMENT = "device_event"

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})


def escape_key(s: str) -> str:
    """Tag keys, tag values and field keys: escape comma, equals and space (and line breaks).

    Our keys and tag values are ids from the contract's alphabets, so no backslash reaches here.
    """
    return s.translate(_KEY_ESCAPES)


def escape_measurement(s: str) -> str:
    return s.translate(_MEAS_ESCAPES)


def escape_string_field(s: str) -> str:
    """String field values: quote, escaping backslash and double quote."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def to_line(rec: Record) -> str:
    """One line of line protocol (no trailing newline) for an accepted record."""
    if isinstance(rec, Telemetry):
        fields = ",".join(f"{escape_key(k)}={field_value(v)}" for k, v in rec.metrics.items())
        return f"{escape_measurement(rec.device.kind)}{_tags(rec)} {fields} {rec.ts_ms}"
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
