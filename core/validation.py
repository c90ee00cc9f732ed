"""Validation of device messages against the contract: the one place that decides accept or reject.

`validate()` turns (topic, raw payload) into a typed record or raises `Rejected(reason)`.
Ingest stores what it returns, the alert engine evaluates it, the simulators self-check with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson

from core.contract import (
    COMMUNITIES,
    DEVICE_ID_RE,
    KIND_EVENTS,
    KINDS,
    MAX_FUTURE_MS,
    MAX_PAST_MS,
    MAX_PAYLOAD_BYTES,
    MESSAGE_TYPES,
    METRICS,
    STATUS_STATES,
    TOPIC_ROOT,
    Device,
    Reason,
    Topic,
)

MAX_DETAIL_CHARS = 4096

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


class Rejected(Exception):
    """A message the contract does not accept; `reason` is a contract dead-letter reason."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        # The message text is built only when shown: in a storm of junk most never are.
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else str(self.reason)


@dataclass(frozen=True, slots=True)
class Telemetry:
    device: Device
    ts_ms: int
    seq: int | None
    metrics: dict[str, float | bool]


@dataclass(frozen=True, slots=True)
class Status:
    device: Device
    ts_ms: int
    state: str
    from_will: bool  # no ts: the broker's last will, timed at reception


@dataclass(frozen=True, slots=True)
class Event:
    device: Device
    ts_ms: int
    event: str
    detail: str


Record = Telemetry | Status | Event


def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != TOPIC_ROOT or parts[4] not in MESSAGE_TYPES:
        raise Rejected(Reason.BAD_TOPIC, topic[:200])
    _, community, kind, device_id, msg_type = parts
    if not DEVICE_ID_RE.match(device_id):
        raise Rejected(Reason.BAD_TOPIC, f"bad device id {device_id[:80]!r}")
    if community not in COMMUNITIES:
        raise Rejected(Reason.UNKNOWN_COMMUNITY, community[:80])
    if kind not in KINDS:
        raise Rejected(Reason.UNKNOWN_KIND, kind[:80])
    return Topic(community, kind, device_id, msg_type)


def _nonfinite(name: str) -> float:
    return float(name.replace("Infinity", "inf"))


def parse_json(payload: bytes) -> object:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(Reason.BAD_JSON, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity literals; the contract calls those bad_value, not bad_json.
        # Only payloads that could hold one take the slow second parse (a storm of junk is cheap).
        if b"NaN" not in payload and b"Infinity" not in payload:
            raise Rejected(Reason.BAD_JSON, str(exc)[:200]) from None
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_nonfinite)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)[:200]) from None
    except RecursionError:  # found by fuzzing: 5,000 nested arrays around a NaN (orjson stops at 1,024)
        raise Rejected(Reason.BAD_JSON, "nested too deeply") from None


def parse_ts(raw: object) -> int:
    """Epoch milliseconds from an integer or an RFC 3339 string with offset."""
    if isinstance(raw, bool):
        raise Rejected(Reason.BAD_TIMESTAMP, "boolean ts")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        m = _RFC3339.match(raw)
        if m:
            date, time, frac, off = m.groups()
            frac6 = (frac or "0")[:6].ljust(6, "0")
            off = "+00:00" if off in ("Z", "z") else off
            try:
                dt = datetime.fromisoformat(f"{date}T{time}.{frac6}{off}")
            except ValueError:
                raise Rejected(Reason.BAD_TIMESTAMP, raw[:64]) from None
            return int(dt.timestamp()) * 1000 + dt.microsecond // 1000
        raise Rejected(Reason.BAD_TIMESTAMP, f"not RFC 3339 with offset: {raw[:64]!r}")
    if raw is None:
        raise Rejected(Reason.BAD_TIMESTAMP, "ts missing")
    raise Rejected(Reason.BAD_TIMESTAMP, f"ts of type {type(raw).__name__}")


def check_window(ts_ms: int, now_ms: int) -> None:
    if ts_ms > now_ms + MAX_FUTURE_MS:
        raise Rejected(Reason.BAD_TIMESTAMP, "more than 24 h in the future")
    if ts_ms < now_ms - MAX_PAST_MS:
        raise Rejected(Reason.BAD_TIMESTAMP, "more than 7 days in the past")


def check_metrics(kind: str, m: object) -> dict[str, float | bool]:
    if not isinstance(m, dict) or not m:
        raise Rejected(Reason.BAD_PAYLOAD, "m must be a non-empty object")
    specs = METRICS[kind]
    out: dict[str, float | bool] = {}
    for name, value in m.items():
        spec = specs.get(name)
        if spec is None:
            raise Rejected(Reason.UNKNOWN_METRIC, f"{name[:64]!r} for kind {kind}")
        if spec.is_bool:
            if not isinstance(value, bool):
                raise Rejected(Reason.BAD_VALUE, f"{name} must be a boolean")
            out[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Rejected(Reason.BAD_VALUE, f"{name} must be a number")
        v = float(value)
        if not math.isfinite(v):
            raise Rejected(Reason.BAD_VALUE, f"{name} is not finite")
        assert spec.lo is not None and spec.hi is not None
        if not spec.lo <= v <= spec.hi:
            raise Rejected(Reason.BAD_VALUE, f"{name}={v:g} outside {spec.lo:g}..{spec.hi:g}")
        out[name] = v
    return out


def lookup_device(topic: Topic, registry: Mapping[str, Device]) -> Device:
    dev = registry.get(topic.device_id)
    if dev is None:
        raise Rejected(Reason.UNKNOWN_DEVICE, f"{topic.device_id} not in the registry")
    if dev.community != topic.community or dev.kind != topic.kind:
        raise Rejected(
            Reason.UNKNOWN_DEVICE,
            f"{topic.device_id} is registered as {dev.community}/{dev.kind}",
        )
    return dev


def validate(topic: str, payload: bytes, registry: Mapping[str, Device], now_ms: int) -> Record:
    """Accept one device message or raise `Rejected` with the contract's reason."""
    t = parse_topic(topic)
    # Identity before content: an unregistered sender is unknown_device whatever it sent.
    dev = lookup_device(t, registry)
    doc = parse_json(payload)
    if not isinstance(doc, dict):
        raise Rejected(Reason.BAD_PAYLOAD, "payload is not a JSON object")

    if t.msg_type == "telemetry":
        ts = parse_ts(doc.get("ts"))
        check_window(ts, now_ms)
        seq = doc.get("seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
            raise Rejected(Reason.BAD_PAYLOAD, "seq must be a non-negative integer")
        if "m" not in doc:
            raise Rejected(Reason.BAD_PAYLOAD, "m missing")
        metrics = check_metrics(t.kind, doc["m"])
        return Telemetry(dev, ts, seq, metrics)

    if t.msg_type == "status":
        state = doc.get("state")
        if state not in STATUS_STATES:
            raise Rejected(Reason.BAD_PAYLOAD, f"unknown state {str(state)[:32]!r}")
        if "ts" in doc:
            ts = parse_ts(doc["ts"])
            check_window(ts, now_ms)
            will = False
        else:
            ts, will = now_ms, True
        return Status(dev, ts, str(state), will)

    ts = parse_ts(doc.get("ts"))
    check_window(ts, now_ms)
    event = doc.get("event")
    if not isinstance(event, str) or event not in KIND_EVENTS[t.kind]:
        raise Rejected(Reason.BAD_PAYLOAD, f"unknown event {str(event)[:32]!r} for kind {t.kind}")
    detail = doc.get("detail", "")
    if detail is None:
        detail = ""
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL_CHARS:
        raise Rejected(Reason.BAD_PAYLOAD, "detail must be a string of at most 4096 characters")
    return Event(dev, ts, event, detail)
