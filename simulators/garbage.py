"""Messages that break the contract, each tagged with the dead-letter reason validate() must give.

One generator per way of breaking a rule; all of them together cover every reason of contract §3,
plus oversized and binary payloads and topic-injection attempts. Topics stay publishable (MQTT
forbids wildcards in PUBLISH topics, so injection uses extra levels, spaces, `;`, quotes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from core.contract import KINDS, MAX_PAST_MS, METRICS, Device, Reason, device_topic
from simulators.fleet import Fleet, Message
from simulators.noise import mix64, u01


@dataclass(frozen=True, slots=True)
class Garbage:
    topic: str
    payload: bytes
    reason: Reason
    generator: str


def _t(d: Device, msg_type: str = "telemetry") -> str:
    return device_topic(d.community, d.kind, d.device_id, msg_type)


def _ok_m(d: Device) -> dict[str, float | bool]:
    """One valid metric for the device's kind (so only the intended fault remains)."""
    name, spec = next(iter(METRICS[d.kind].items()))
    return {name: True if spec.is_bool else float(spec.lo or 0.0) + 1.0}


def _j(doc: object) -> bytes:
    return orjson.dumps(doc)


Gen = Callable[[Device, Device, int, int], tuple[str, bytes]]
# (device, a device of another kind, now_ms, n) -> (topic, payload)

GENERATORS: dict[str, tuple[Reason, Gen]] = {
    # bad_topic: wrong shape, injection attempts, bad ids
    "topic_extra_level": (Reason.BAD_TOPIC, lambda d, o, t, n: (_t(d) + "/x", _j({"ts": t, "m": _ok_m(d)}))),
    "topic_sql_injection": (Reason.BAD_TOPIC, lambda d, o, t, n: (
        f"sc/{d.community}/{d.kind}/G 1;DROP TABLE devices/telemetry", _j({"ts": t, "m": _ok_m(d)}))),
    "topic_quote_injection": (Reason.BAD_TOPIC, lambda d, o, t, n: (
        f"sc/{d.community}/{d.kind}/{d.device_id}\",x=\"1/telemetry", _j({"ts": t, "m": _ok_m(d)}))),
    "topic_empty_level": (Reason.BAD_TOPIC, lambda d, o, t, n: (
        f"sc/{d.community}/{d.kind}//telemetry", _j({"ts": t, "m": _ok_m(d)}))),
    "topic_wrong_root": (Reason.BAD_TOPIC, lambda d, o, t, n: ("x" + _t(d), _j({"ts": t, "m": _ok_m(d)}))),
    "topic_unknown_type": (Reason.BAD_TOPIC, lambda d, o, t, n: (_t(d, "config"), _j({"ts": t, "m": _ok_m(d)}))),
    "topic_path_traversal": (Reason.BAD_TOPIC, lambda d, o, t, n: (
        f"sc/{d.community}/{d.kind}/../telemetry", _j({"ts": t, "m": _ok_m(d)}))),
    # bad_json
    "json_not_json": (Reason.BAD_JSON, lambda d, o, t, n: (_t(d), b"not json at all")),
    "json_truncated": (Reason.BAD_JSON, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": _ok_m(d)})[:-3])),
    "json_binary": (Reason.BAD_JSON, lambda d, o, t, n: (
        _t(d), bytes([0xFF, 0xFE, 0x00, 0x81]) + n.to_bytes(8, "little") + b"\xc3\x28")),
    "json_latin1": (Reason.BAD_JSON, lambda d, o, t, n: (
        _t(d), b'{"ts": %d, "m": {"lel_pct": 1}, "note": "caf\xe9"}' % t)),
    "json_oversized": (Reason.BAD_JSON, lambda d, o, t, n: (
        _t(d, "event"), _j({"ts": t, "event": "reboot", "detail": "x" * (17 * 1024)}))),
    "json_empty": (Reason.BAD_JSON, lambda d, o, t, n: (_t(d), b"")),
    # bad_payload
    "payload_array": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d), _j([t, _ok_m(d)]))),
    "payload_no_m": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d), _j({"ts": t, "seq": n}))),
    "payload_empty_m": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {}}))),
    "payload_m_list": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": [1, 2]}))),
    "payload_negative_seq": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d), _j({"ts": t, "seq": -1, "m": _ok_m(d)}))),
    "payload_bad_state": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d, "status"), _j({"ts": t, "state": "sleepy"}))),
    "payload_bad_event": (Reason.BAD_PAYLOAD, lambda d, o, t, n: (_t(d, "event"), _j({"ts": t, "event": "explode"}))),
    # bad_timestamp
    "ts_missing": (Reason.BAD_TIMESTAMP, lambda d, o, t, n: (_t(d), _j({"seq": n, "m": _ok_m(d)}))),
    "ts_future": (Reason.BAD_TIMESTAMP, lambda d, o, t, n: (
        _t(d), _j({"ts": t + 25 * 3600_000, "m": _ok_m(d)}))),
    "ts_past": (Reason.BAD_TIMESTAMP, lambda d, o, t, n: (
        _t(d), _j({"ts": t - MAX_PAST_MS - 3600_000, "m": _ok_m(d)}))),
    "ts_no_offset": (Reason.BAD_TIMESTAMP, lambda d, o, t, n: (
        _t(d), _j({"ts": "2026-11-25T03:12:00", "m": _ok_m(d)}))),
    "ts_bool": (Reason.BAD_TIMESTAMP, lambda d, o, t, n: (_t(d), _j({"ts": True, "m": _ok_m(d)}))),
    "ts_float": (Reason.BAD_TIMESTAMP, lambda d, o, t, n: (_t(d), _j({"ts": t + 0.5, "m": _ok_m(d)}))),
    # bad_value
    "value_string": (Reason.BAD_VALUE, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {_num(d): "high"}}))),
    "value_out_of_range": (Reason.BAD_VALUE, lambda d, o, t, n: (
        _t(d), _j({"ts": t, "m": {_num(d): 1e6}}))),
    "value_negative": (Reason.BAD_VALUE, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {_num(d): -100.0}}))),
    "value_nan": (Reason.BAD_VALUE, lambda d, o, t, n: (
        _t(d), b'{"ts": %d, "m": {"%s": NaN}}' % (t, _num(d).encode()))),
    "value_infinity": (Reason.BAD_VALUE, lambda d, o, t, n: (
        _t(d), b'{"ts": %d, "m": {"%s": -Infinity}}' % (t, _num(d).encode()))),
    "value_bool_for_number": (Reason.BAD_VALUE, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {_num(d): True}}))),
    "value_null": (Reason.BAD_VALUE, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {_num(d): None}}))),
    # unknown_metric
    "metric_other_kind": (Reason.UNKNOWN_METRIC, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {_num(o): 1.0}}))),
    "metric_injection": (Reason.UNKNOWN_METRIC, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {"lel_pct 2,x=1": 1}}))),
    "metric_unicode": (Reason.UNKNOWN_METRIC, lambda d, o, t, n: (_t(d), _j({"ts": t, "m": {"温度": 20}}))),
    # unknown_community / unknown_kind
    "community_unknown": (Reason.UNKNOWN_COMMUNITY, lambda d, o, t, n: (
        device_topic("atlantis", d.kind, d.device_id, "telemetry"), _j({"ts": t, "m": _ok_m(d)}))),
    "kind_unknown": (Reason.UNKNOWN_KIND, lambda d, o, t, n: (
        device_topic(d.community, "nuclear", d.device_id, "telemetry"), _j({"ts": t, "m": _ok_m(d)}))),
    # unknown_device
    "device_unregistered": (Reason.UNKNOWN_DEVICE, lambda d, o, t, n: (
        device_topic(d.community, d.kind, f"ZZ-GARBAGE-{n % 1000:03d}", "telemetry"), _j({"ts": t, "m": _ok_m(d)}))),
    "device_wrong_kind": (Reason.UNKNOWN_DEVICE, lambda d, o, t, n: (
        device_topic(d.community, o.kind, d.device_id, "telemetry"), _j({"ts": t, "m": _ok_m(o)}))),
    "device_wrong_community": (Reason.UNKNOWN_DEVICE, lambda d, o, t, n: (
        device_topic(_other_community(d), d.kind, d.device_id, "telemetry"), _j({"ts": t, "m": _ok_m(d)}))),
}


def _num(d: Device) -> str:
    return next(name for name, spec in METRICS[d.kind].items() if not spec.is_bool)


def _other_community(d: Device) -> str:
    from core.contract import COMMUNITIES

    return next(c for c in COMMUNITIES if c != d.community)


def generate(name: str, device: Device, other: Device, now_ms: int, n: int = 0) -> Garbage:
    reason, gen = GENERATORS[name]
    topic, payload = gen(device, other, now_ms, n)
    return Garbage(topic, payload, reason, name)


def pick_other(device: Device, devices: Sequence[Device]) -> Device:
    """A registered device of another kind (for cross-kind faults)."""
    want = KINDS[(KINDS.index(device.kind) + 1) % len(KINDS)]
    return next((d for d in devices if d.kind == want), device)


class GarbageMixer:
    """Adds garbage to each batch so that it makes up `rate` of everything published."""

    def __init__(self, registry: Mapping[str, Device], fleet: Fleet, rate: float, seed: int) -> None:
        self.devices = fleet.devices or list(registry.values())
        self.by_kind = {k: next((d for d in registry.values() if d.kind == k), None) for k in KINDS}
        self.ratio = 100.0 if rate >= 0.99 else rate / (1.0 - rate)
        self.names = sorted(GENERATORS)
        self.seed = seed
        self.acc = 0.0
        self.n = 0
        self.tagged: dict[str, int] = {}  # reason -> count sent

    def mix(self, batch: Sequence[Message]) -> list[Message]:
        self.acc += len(batch) * self.ratio
        out = []
        t = batch[-1].t_ms if batch else 0
        while self.acc >= 1.0 and batch:
            self.acc -= 1.0
            self.n += 1
            name = self.names[self.n % len(self.names)]  # round robin: every generator is exercised
            dev = self.devices[mix64(self.seed ^ self.n) % len(self.devices)]
            other = self.by_kind[KINDS[(KINDS.index(dev.kind) + 1 + int(u01(self.seed, self.n) * 3)) % 4]] or dev
            g = generate(name, dev, other, t, self.n)
            self.tagged[g.reason] = self.tagged.get(g.reason, 0) + 1
            out.append(Message(t, g.topic, g.payload, False, 0, "", "garbage"))
        return out
