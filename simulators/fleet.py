"""The fleet: schedules every device's samples, applies incidents and realism, builds messages.

Sample k of a device is due at phase + k·interval + jitter(k): a pure function of
(device, k, seed), so a run is reproducible and independent of how often `due()` is called.
One heap of (due time, device) serves any fleet size; `due()` returns a whole tick's batch.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import orjson

from core.contract import METRICS, Device, device_topic
from simulators.model import Metrics, Profile, baseline, make_profile
from simulators.noise import sym, u01
from simulators.scenarios import EffectDef, Instance


@dataclass(frozen=True, slots=True)
class Message:
    t_ms: int  # simulated time the message is sent (true time, not the device's skewed clock)
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0  # 0: publisher's telemetry QoS; status always goes QoS 1
    device_id: str = ""
    kind: str = ""  # "telemetry" | "status" | "event"


@dataclass(frozen=True, slots=True)
class Realism:
    """Imperfections of real devices (probabilities per sample). `Realism.off()` for exact tests."""

    jitter: float = 0.1  # ± fraction of the interval
    skew_s: float = 3.0  # ± clock skew, constant per device
    p_duplicate: float = 0.002
    p_reorder: float = 0.002  # held back and sent after the device's next sample
    p_loss: float = 0.0005

    @classmethod
    def off(cls) -> Realism:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)


_SALT_JIT, _SALT_DUP, _SALT_REO, _SALT_LOSS, _SALT_NOISE = 61, 62, 63, 64, 65


class _Effect:
    """One EffectDef applied to one device, with the little state `stuck`/`spike` need."""

    __slots__ = ("d", "end_ms", "from_ms", "frozen", "inst_start", "key", "spent")

    def __init__(self, d: EffectDef, inst: Instance, key: int) -> None:
        self.d = d
        self.inst_start = inst.start_ms
        self.from_ms = inst.start_ms + int(d.from_s * 1000)
        self.end_ms = inst.end_ms if d.to_s is None else inst.start_ms + int(d.to_s * 1000)
        self.key = key
        self.frozen: float | bool | None = None
        self.spent = False

    def active(self, t: int) -> bool:
        return self.from_ms <= t < self.end_ms

    def target(self, t: int) -> float | bool:
        d = self.d
        if d.ramp:
            return _interp(d.ramp, (t - self.inst_start) / 1000.0)
        assert d.value is not None, "effect needs a value or a ramp"
        return d.value

    def apply(self, m: Metrics, t: int, k: int) -> None:
        d, name = self.d, self.d.metric
        if name is None:
            return
        base = m.get(name, 0.0)
        if d.mode == "set":
            m[name] = self.target(t)
        elif d.mode == "add":
            m[name] = float(base) + float(self.target(t))
        elif d.mode == "scale":
            m[name] = float(base) * float(self.target(t))
        elif d.mode == "stuck":  # the reading stops changing
            if self.frozen is None:
                self.frozen = d.value if d.value is not None else base
            m[name] = self.frozen
        elif d.mode == "noise":
            m[name] = float(base) + d.amplitude * sym(self.key, k, _SALT_NOISE)
        elif d.mode == "spike" and not self.spent:  # exactly one sample
            self.spent = True
            m[name] = self.target(t)


def _interp(pts: Sequence[tuple[float, float]], x: float) -> float:
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return pts[-1][1]


def _clamp(kind: str, m: Metrics) -> None:
    """Keep effect results inside the contract's plausible ranges (the simulator never lies by accident)."""
    specs = METRICS[kind]
    for name, v in m.items():
        spec = specs[name]
        if spec.is_bool:
            m[name] = bool(v)
        else:
            assert spec.lo is not None and spec.hi is not None
            m[name] = round(min(spec.hi, max(spec.lo, float(v))), 3)


def status_payload(ts_ms: int | None, state: str) -> bytes:
    return orjson.dumps({"state": state} if ts_ms is None else {"ts": ts_ms, "state": state})


class Fleet:
    """Deterministic message source for a set of devices and incident instances."""

    def __init__(
        self,
        devices: Iterable[Device],
        seed: int,
        start_ms: int,
        realism: Realism | None = None,
        instances: Sequence[Instance] = (),
    ) -> None:
        self.devices: list[Device] = sorted(devices, key=lambda d: d.device_id)
        self.seed = seed
        self.start_ms = start_ms
        self.realism = realism or Realism()
        self.instances = list(instances)
        r = self.realism
        n = len(self.devices)
        self.profiles: list[Profile] = [make_profile(d, seed) for d in self.devices]
        self.interval_ms = [max(100, int(d.interval_s * 1000)) for d in self.devices]
        self.phase_ms = [int(u01(p.key, 0, 60) * iv) for p, iv in zip(self.profiles, self.interval_ms, strict=True)]
        self.skew_ms = [int(r.skew_s * 1000 * sym(p.key, 0, 66)) for p in self.profiles]
        self.topics = [device_topic(d.community, d.kind, d.device_id, "telemetry") for d in self.devices]
        self.index = {d.device_id: i for i, d in enumerate(self.devices)}
        self.k0 = [0] * n
        self.deferred: list[Message | None] = [None] * n
        self.effects: list[list[_Effect]] = [[] for _ in range(n)]
        self.oneshots: list[tuple[int, int, Message]] = []
        self.heap: list[tuple[int, int, int]] = []  # (due ms, device index, k)
        for i in range(n):
            k = self._first_k(i)
            self.k0[i] = k
            self.heap.append((self._t(i, k), i, k))
        heapq.heapify(self.heap)
        for inst in self.instances:
            self._install(inst)
        heapq.heapify(self.oneshots)

    # -- schedule -------------------------------------------------------------------------

    def _t(self, i: int, k: int) -> int:
        iv = self.interval_ms[i]
        return self.phase_ms[i] + k * iv + int(self.realism.jitter * iv * sym(self.profiles[i].key, k, _SALT_JIT))

    def _first_k(self, i: int) -> int:
        k = math.ceil((self.start_ms - self.phase_ms[i]) / self.interval_ms[i]) - 1
        while self._t(i, k) < self.start_ms:
            k += 1
        return k

    # -- incidents ------------------------------------------------------------------------

    def _install(self, inst: Instance) -> None:
        for e, ids in zip(inst.sdef.effects, inst.effect_devices, strict=True):
            for dev_id in ids:
                i = self.index.get(dev_id)
                if i is None:
                    raise ValueError(f"{inst.instance_id}: device {dev_id} is not in the fleet")
                eff = _Effect(e, inst, self.profiles[i].key)
                self.effects[i].append(eff)
                self._oneshots_for(i, eff)

    def _oneshot(self, t: int, i: int, msg_type: str, payload: bytes) -> None:
        d = self.devices[i]
        topic = device_topic(d.community, d.kind, d.device_id, msg_type)
        retain = msg_type == "status"
        msg = Message(t, topic, payload, retain, 1 if retain else 0, d.device_id, msg_type)
        self.oneshots.append((t, len(self.oneshots), msg))

    def _oneshots_for(self, i: int, eff: _Effect) -> None:
        d, skew = eff.d, self.skew_ms[i]
        if d.event:
            self._oneshot(eff.from_ms, i, "event", orjson.dumps(
                {"ts": eff.from_ms + skew, "event": d.event, "detail": d.detail}))
        if d.status == "offline":
            self._oneshot(eff.from_ms, i, "status", status_payload(eff.from_ms + skew, "offline"))
            self._oneshot(eff.end_ms, i, "status", status_payload(eff.end_ms + skew, "online"))
        if d.silent and d.will_after_s is not None:
            will_at = eff.from_ms + int(d.will_after_s * 1000)
            if will_at < eff.end_ms:  # a last will carries no ts (contract §3)
                self._oneshot(will_at, i, "status", status_payload(None, "offline"))
                self._oneshot(eff.end_ms, i, "status", status_payload(eff.end_ms + skew, "online"))

    # -- output ---------------------------------------------------------------------------

    def initial(self) -> list[Message]:
        """Retained `online` status for every device at the start (what each device says on connect)."""
        out = []
        for i, d in enumerate(self.devices):
            topic = device_topic(d.community, d.kind, d.device_id, "status")
            out.append(Message(self.start_ms, topic, status_payload(self.start_ms + self.skew_ms[i], "online"),
                               True, 1, d.device_id, "status"))
        return out

    def metrics_at(self, i: int, t: int, k: int) -> tuple[Metrics, bool]:
        """(readings, silenced) of device i's sample k at time t, incidents included."""
        m = baseline(self.profiles[i], t, k)
        silenced = False
        for eff in self.effects[i]:
            if eff.active(t):
                if eff.d.silent or eff.d.status == "offline":
                    silenced = True
                eff.apply(m, t, k)
        if self.effects[i]:
            _clamp(self.devices[i].kind, m)
        return m, silenced

    def next_due_ms(self) -> int | None:
        cands = [h[0][0] for h in (self.heap, self.oneshots) if h]
        return min(cands) if cands else None

    def due(self, until_ms: int) -> list[Message]:
        """Every message due at or before `until_ms`, in send order."""
        out: list[Message] = []
        r = self.realism
        heap, push, pop = self.heap, heapq.heappush, heapq.heappop
        while heap and heap[0][0] <= until_ms:
            t, i, k = pop(heap)
            push(heap, (self._t(i, k + 1), i, k + 1))
            m, silenced = self.metrics_at(i, t, k)
            if silenced:
                continue
            key = self.profiles[i].key
            payload = orjson.dumps({"ts": t + self.skew_ms[i], "seq": k - self.k0[i], "m": m})
            msg = Message(t, self.topics[i], payload, False, 0, self.devices[i].device_id, "telemetry")
            held = self.deferred[i]
            if r.p_loss and u01(key, k, _SALT_LOSS) < r.p_loss:
                continue
            if r.p_reorder and held is None and u01(key, k, _SALT_REO) < r.p_reorder:
                self.deferred[i] = msg  # arrives after the next sample: out of order
                continue
            out.append(msg)
            if r.p_duplicate and u01(key, k, _SALT_DUP) < r.p_duplicate:
                out.append(msg)
            if held is not None:
                out.append(replace(held, t_ms=t))
                self.deferred[i] = None
        if self.oneshots and self.oneshots[0][0] <= until_ms:
            while self.oneshots and self.oneshots[0][0] <= until_ms:
                out.append(heapq.heappop(self.oneshots)[2])
            out.sort(key=lambda msg: msg.t_ms)  # stable: telemetry order per device is kept
        return out
