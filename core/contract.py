"""The external contract's vocabulary and types.

The contract is an external document (kept outside this repository, by the street and its device
vendors): topics, payloads, alert messages, /api, SC_* variables and CLI verbs. What it fixes is
restated here as code: communities, kinds, metrics and their plausible ranges, dead-letter reasons and
the alert message. The severity scale is in core.severity.

Every part imports these; nothing else may spell a topic, metric, reason or alert field.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field
from enum import StrEnum
from typing import Any

COMMUNITIES: dict[str, str] = {
    "yanling": "岩岭社区",
    "gongyixincun": "工艺新村社区",
    "lanshanjun": "蓝山郡社区",
    "yanhu": "艳湖社区",
}

KINDS: tuple[str, ...] = ("gas", "water", "power", "camera")
# What staff call each kind, everywhere (pages, messages, the report): the one home of these words.
KIND_LABEL: dict[str, str] = {"gas": "燃气", "water": "供水", "power": "用电", "camera": "视频"}

# A gas detector under a sewer manhole cover: its registry `install` (the project's own property, beside
# the contract's; the rule manhole_gas_leak and the simulator's manhole incidents look for it).
MANHOLE = "窨井"

# The kinds as the street's Excel device ledger (台账) writes them (contract §6).
KIND_LEDGER_NAMES: dict[str, str] = {"gas": "燃气", "water": "水", "power": "电", "camera": "摄像头"}

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

MAX_PAYLOAD_BYTES = 16 * 1024
MAX_FUTURE_MS = 24 * 3600 * 1000
MAX_PAST_MS = 7 * 24 * 3600 * 1000

TOPIC_ROOT = "sc"
MESSAGE_TYPES: tuple[str, ...] = ("telemetry", "status", "event")
ALERT_TOPIC_ROOT = "sc/alerts"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    unit: str
    is_bool: bool = False
    lo: float | None = None
    hi: float | None = None


def _num(name: str, unit: str, lo: float, hi: float) -> MetricSpec:
    return MetricSpec(name, unit, False, lo, hi)


def _bool(name: str) -> MetricSpec:
    return MetricSpec(name, "bool", True)


METRICS: dict[str, dict[str, MetricSpec]] = {
    "gas": {
        m.name: m
        for m in (
            _num("lel_pct", "%LEL", 0, 100),
            _num("co_ppm", "ppm", 0, 10000),
            _num("pressure_kpa", "kPa", 0, 1600),
            _bool("valve_open"),
        )
    },
    "water": {
        m.name: m
        for m in (
            _num("pressure_mpa", "MPa", 0, 2.5),
            _num("flow_m3h", "m³/h", 0, 5000),
            _bool("leak"),
            _num("level_m", "m", -50, 200),
        )
    },
    "power": {
        m.name: m
        for m in (
            _num("voltage_v", "V", 0, 500),
            _num("current_a", "A", 0, 5000),
            _num("leakage_ma", "mA", 0, 10000),
            _num("temp_c", "°C", -40, 300),
            _num("power_kw", "kW", 0, 10000),
        )
    },
    "camera": {
        m.name: m
        for m in (
            _bool("online"),
            _num("fps", "fps", 0, 120),
            _num("bitrate_kbps", "kbit/s", 0, 100000),
            _bool("storage_ok"),
        )
    },
}

COMMON_EVENTS: frozenset[str] = frozenset({"reboot", "low_battery"})
KIND_EVENTS: dict[str, frozenset[str]] = {
    "gas": COMMON_EVENTS,
    "water": COMMON_EVENTS,
    "power": COMMON_EVENTS,
    "camera": COMMON_EVENTS | {"tamper", "video_loss", "occlusion", "motion"},
}

STATUS_STATES: frozenset[str] = frozenset({"online", "offline"})


class Reason(StrEnum):
    """Dead-letter reasons, exactly as the contract names them."""

    BAD_TOPIC = "bad_topic"
    BAD_JSON = "bad_json"
    BAD_PAYLOAD = "bad_payload"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_VALUE = "bad_value"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_COMMUNITY = "unknown_community"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_DEVICE = "unknown_device"




class AlertState(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Device:
    """One registry entry (contract §2) plus optional project fields."""

    device_id: str
    kind: str
    community: str
    compound_id: str
    interval_s: float
    lon: float
    lat: float
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def as_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update(
            device_id=self.device_id,
            kind=self.kind,
            community=self.community,
            compound_id=self.compound_id,
            interval_s=self.interval_s,
            lon=self.lon,
            lat=self.lat,
        )
        return out


@dataclass(frozen=True, slots=True)
class Topic:
    community: str
    kind: str
    device_id: str
    msg_type: str  # one of MESSAGE_TYPES


def device_topic(community: str, kind: str, device_id: str, msg_type: str) -> str:
    return f"{TOPIC_ROOT}/{community}/{kind}/{device_id}/{msg_type}"


def alert_topic(community: str, alert_id: str) -> str:
    return f"{ALERT_TOPIC_ROOT}/{community}/{alert_id}"


@dataclass(slots=True)
class Alert:
    """The alert message of contract §4; field order is the contract's."""

    alert_id: str
    rule: str
    severity: str
    state: str
    community: str
    compound_id: str
    device_id: str
    kind: str
    metric: str | None
    value: float | bool | str | None
    threshold: float | bool | str | None
    lon: float | None
    lat: float | None
    started_at: str
    updated_at: str
    message: str
    # Project additions, outside the contract's minimum.
    resolved_at: str | None = None
    acked_by: str | None = None
    note: str | None = None
    # Who is near: units (schools, clinics...), shops and households within a radius.
    nearby: dict[str, Any] | None = None
    escalation_tier: int | None = None  # which tier of the on-call roster has been told
    resolved_by: str | None = None  # the person who resolved it by hand (None: the condition cleared)
    # How many times the incident came back within its watch after a close (复燃): same alert_id, reopened.
    reopened: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Alert:
        # A field the payload lacks takes its default (an older payload has no `reopened`), else None.
        return cls(**{k: d.get(k, None if f.default is MISSING else f.default)
                      for k, f in cls.__dataclass_fields__.items()})
