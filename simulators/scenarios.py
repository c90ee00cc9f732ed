"""Incident scenarios: YAML definitions (incidents/*.yaml), placement, and per-device effects.

A definition says what happens to which kinds of devices, relative to the scenario's start;
an instance pins it to a place (a device or a compound) and a start time, resolves the concrete
devices, and yields the ground truth the scorer compares alerts with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.contract import KINDS, METRICS, Device
from core.timebase import iso_ms as iso
from simulators.noise import key_of, mix64

INCIDENTS_DIR = Path(__file__).resolve().parent / "incidents"
# Short names the demo and `--inject` use.
ALIASES: dict[str, str] = {"gas_leak": "gas_leak", "burst": "water_main_burst", "outage": "power_outage"}
MODES = ("set", "add", "scale", "stuck", "noise", "spike")

# The contract's default rules (§4): rule -> (kind or None for any, severity).
CONTRACT_RULES: dict[str, tuple[str | None, str]] = {
    "gas_lel_high": ("gas", "red"),
    "gas_lel_warn": ("gas", "yellow"),
    "power_leakage_high": ("power", "orange"),
    "power_temp_high": ("power", "orange"),
    "water_leak": ("water", "orange"),
    "camera_offline": ("camera", "yellow"),
    "camera_tamper": ("camera", "orange"),
    "device_silent": (None, "blue"),
}


def triggers(rule: str, e: EffectDef) -> bool:
    """Whether effect `e` can set off `rule` (so its devices are the ones expected to alert)."""
    metric = {"gas_lel_high": "lel_pct", "gas_lel_warn": "lel_pct", "power_leakage_high": "leakage_ma",
              "power_temp_high": "temp_c", "water_leak": "leak"}.get(rule)
    if metric is not None:
        return e.metric == metric
    if rule == "camera_offline":
        return e.status == "offline" or e.metric == "online" or (e.silent and e.will_after_s is not None)
    if rule == "camera_tamper":
        return e.event == "tamper"
    if rule == "device_silent":
        return e.silent or e.status == "offline"
    return True  # a project rule: every device the scenario touches


class ScenarioError(ValueError):
    """A scenario file or placement that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class EffectDef:
    devices: str  # a kind, or "all"
    count: int | None = None  # how many of those devices at the place (None: all)
    from_s: float = 0.0
    to_s: float | None = None  # None: the scenario's end
    metric: str | None = None
    mode: str = "set"
    ramp: tuple[tuple[float, float], ...] = ()  # (seconds since scenario start, value)
    value: float | bool | None = None
    amplitude: float = 0.0
    event: str | None = None
    detail: str = ""
    status: str | None = None  # "offline": status offline, telemetry stops, "online" again at to_s
    silent: bool = False  # telemetry stops (network cut)
    will_after_s: float | None = None  # with silent: emulate the broker's last will after this long
    building: bool = False  # only devices in the primary device's building


@dataclass(frozen=True, slots=True)
class ExpectDef:
    rule: str
    severity: str
    devices: str  # kind, or "all"
    after_s: float = 0.0  # when the condition becomes true, seconds after the scenario start
    optional: bool = False
    place: str | None = None  # "compound" / "community": one alert for the place, not one per device


@dataclass(frozen=True, slots=True)
class ScenarioDef:
    name: str
    title: str
    place: str  # "device" or "compound"
    kind: str  # primary device kind (the one a device place must be)
    duration_s: float
    effects: tuple[EffectDef, ...]
    expect: tuple[ExpectDef, ...]
    bait: bool = False
    install: str | None = None  # preferred install when choosing a place automatically
    description: str = ""
    # Automatic placement only where the compound has at least this many devices of each kind
    # (a main burst needs two meters), and, with `building`, these kinds in the primary's building.
    needs: tuple[tuple[str, int], ...] = ()
    building_needs: tuple[str, ...] = ()


def _effect(d: Mapping[str, Any], where: str) -> EffectDef:
    known = set(EffectDef.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    e = EffectDef(**{k: v for k, v in d.items() if k != "ramp"},
                  ramp=tuple((float(a), float(b)) for a, b in d.get("ramp") or ()))
    if e.devices != "all" and e.devices not in KINDS:
        raise ScenarioError(f"{where}: devices must be a kind or 'all', not {e.devices!r}")
    if e.metric is not None:
        if e.devices == "all" or e.metric not in METRICS[e.devices]:
            raise ScenarioError(f"{where}: metric {e.metric!r} is not a {e.devices} metric")
        if e.mode not in MODES:
            raise ScenarioError(f"{where}: mode must be one of {MODES}")
    if e.status not in (None, "offline"):
        raise ScenarioError(f"{where}: status may only be 'offline'")
    return e


def parse_scenario(doc: Mapping[str, Any], source: str) -> ScenarioDef:
    try:
        effects = tuple(_effect(e, f"{source}: effects[{i}]") for i, e in enumerate(doc["effects"]))
        expect = []
        for i, x in enumerate(doc.get("expect") or ()):
            rule = x["rule"]
            if rule not in CONTRACT_RULES and "severity" not in x:
                raise ScenarioError(f"{source}: expect[{i}]: rule {rule!r} needs a severity")
            kind, sev = CONTRACT_RULES.get(rule, (None, ""))
            if x.get("place") not in (None, "compound", "community"):
                raise ScenarioError(f"{source}: expect[{i}]: place must be compound or community")
            expect.append(ExpectDef(rule, x.get("severity", sev), x.get("devices", kind or "all"),
                                    float(x.get("after_s", 0)), bool(x.get("optional", False)), x.get("place")))
        sdef = ScenarioDef(
            name=str(doc["name"]), title=str(doc.get("title", doc["name"])),
            place=str(doc.get("place", "device")), kind=str(doc["kind"]),
            duration_s=float(doc["duration_s"]), effects=effects, expect=tuple(expect),
            bait=bool(doc.get("bait", False)), install=doc.get("install"),
            description=str(doc.get("description", "")).strip(),
            needs=tuple((str(k), int(v)) for k, v in (doc.get("needs") or {}).items()),
            building_needs=tuple(str(k) for k in doc.get("building_needs") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{source}: {type(exc).__name__}: {exc}") from None
    if sdef.place not in ("device", "compound", "community") or sdef.kind not in KINDS:
        raise ScenarioError(f"{source}: place must be device|compound|community and kind a device kind")
    return sdef


def library() -> dict[str, Path]:
    """Scenario name -> file, for every file in the bundled incident library."""
    return {p.stem: p for p in sorted(INCIDENTS_DIR.glob("*.yaml"))}


def load_scenario(name_or_path: str) -> ScenarioDef:
    """A bundled scenario by name (or alias), or a YAML file by path."""
    name = ALIASES.get(name_or_path, name_or_path)
    path = library().get(name) or Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(f"no scenario {name_or_path!r}; known: {', '.join(library())}")
    try:
        with path.open(encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: not a scenario (a YAML mapping)")
    return parse_scenario(doc, str(path))


@dataclass(frozen=True, slots=True)
class Placement:
    """A parsed `NAME[@place][+start]` request."""

    scenario: str
    place: str | None = None
    start_s: float = 0.0


def parse_spec(spec: str) -> Placement:
    """`FILE_OR_NAME[@place][+start]`; start in seconds after the run starts (suffix s/m/h allowed)."""
    start = 0.0
    head = spec
    plus = spec.rfind("+")
    if plus > 0 and "@" not in spec[plus:] and "/" not in spec[plus:]:
        head, start = spec[:plus], _seconds(spec[plus + 1:], spec)
    name, _, place = head.partition("@")
    if not name:
        raise ScenarioError(f"{spec!r}: no scenario name")
    return Placement(name, place or None, start)


def parse_inject(spec: str) -> Placement:
    """`--inject NAME:DEVICE_ID[@+SECONDS]`, e.g. `gas_leak:G-000123@+30`."""
    name, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ScenarioError(f"--inject {spec!r}: expected NAME:DEVICE_OR_COMPOUND[@+SECONDS]")
    place, _, when = rest.partition("@")
    start = _seconds(when.lstrip("+"), spec) if when else 0.0
    return Placement(name, place, start)


def _seconds(text: str, spec: str) -> float:
    mult = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:])
    try:
        v = float(text[:-1]) * mult if mult else float(text)
    except ValueError:
        raise ScenarioError(f"{spec!r}: bad start time {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ScenarioError(f"{spec!r}: bad start time {text!r}")
    return v


@dataclass(slots=True)
class Instance:
    """A scenario pinned to devices and a time window (simulated epoch ms)."""

    sdef: ScenarioDef
    instance_id: str
    community: str
    compound_id: str
    start_ms: int
    end_ms: int
    effect_devices: list[list[str]]  # per EffectDef: device ids
    expected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return sorted({d for ds in self.effect_devices for d in ds})

    def truth(self) -> dict[str, Any]:
        """The ground-truth record (one JSONL line; fields documented in simulators/README.md)."""
        return {
            "type": "scenario", "instance": self.instance_id, "scenario": self.sdef.name,
            "title": self.sdef.title, "bait": self.sdef.bait, "community": self.community,
            "compound_id": self.compound_id, "devices": self.devices,
            "start": iso(self.start_ms), "end": iso(self.end_ms),
            "start_ms": self.start_ms, "end_ms": self.end_ms, "expected": self.expected,
        }


class Index:
    """Lookups for placement: devices by id, by (compound, kind), compounds by community."""

    def __init__(self, devices: Mapping[str, Device]) -> None:
        self.devices = devices
        self.by_compound: dict[str, list[Device]] = {}
        for d in devices.values():
            self.by_compound.setdefault(d.compound_id, []).append(d)
        self.by_community: dict[str, list[Device]] = {}
        for d in devices.values():
            self.by_community.setdefault(d.community, []).append(d)
        for lst in [*self.by_compound.values(), *self.by_community.values()]:
            lst.sort(key=lambda d: d.device_id)

    def at(self, compound_id: str, kind: str) -> list[Device]:
        return [d for d in self.by_compound.get(compound_id, ()) if kind == "all" or d.kind == kind]

    def in_community(self, community: str, kind: str) -> list[Device]:
        return [d for d in self.by_community.get(community, ()) if kind == "all" or d.kind == kind]


def _pick(items: Sequence[Any], key: int) -> Any:
    return items[mix64(key) % len(items)]


def instantiate(
    sdef: ScenarioDef, place: str | None, start_ms: int, index: Index, seed: int, serial: int,
    allowed: Mapping[str, Device] | None = None,
) -> Instance:
    """Resolve `place` (device id, compound id, or None: chosen by `seed`) into concrete devices.

    `allowed` (the filtered fleet) limits automatic choices; explicit places may be anywhere.
    """
    key = key_of(f"{sdef.name}#{serial}", seed)
    pool = allowed if allowed is not None else index.devices
    primary: Device | None = None
    if place is None:
        cands = [d for d in pool.values() if d.kind == sdef.kind]
        if sdef.install:
            cands = [d for d in cands if d.extra.get("install") == sdef.install] or cands
        if sdef.place == "compound":
            need = {e.devices for e in sdef.effects if e.devices != "all"}
            cands = [d for d in cands if all(index.at(d.compound_id, k) for k in need)]
        if sdef.needs:
            cands = [d for d in cands if all(len(index.at(d.compound_id, k)) >= n for k, n in sdef.needs)]
        if sdef.building_needs:
            cands = [d for d in cands if all(any(x.extra.get("building_id") == d.extra.get("building_id")
                                                 for x in index.at(d.compound_id, k)) for k in sdef.building_needs)]
        if not cands:
            raise ScenarioError(f"{sdef.name}: no {sdef.kind} device to place it at")
        primary = _pick(sorted(cands, key=lambda d: d.device_id), key)
        compound = primary.compound_id
    elif place in index.devices:
        primary = index.devices[place]
        if sdef.place == "device" and primary.kind != sdef.kind:
            raise ScenarioError(f"{sdef.name}: {place} is a {primary.kind} device, needs {sdef.kind}")
        compound = primary.compound_id
    elif place in index.by_compound:
        compound = place
        if sdef.place == "device":
            cands = index.at(compound, sdef.kind)
            pref = [d for d in cands if d.extra.get("install") == sdef.install]
            if not cands:
                raise ScenarioError(f"{sdef.name}: compound {place} has no {sdef.kind} device")
            primary = _pick(pref or cands, key)
    else:
        raise ScenarioError(f"{sdef.name}: {place!r} is neither a registered device nor a compound")
    any_dev = primary or index.by_compound[compound][0]
    effect_devices: list[list[str]] = []
    for i, e in enumerate(sdef.effects):
        if sdef.place == "device" and primary is not None and e.devices in (primary.kind, "all") and not e.building:
            ids = [primary.device_id]
        elif sdef.place == "community":
            ids = [d.device_id for d in index.in_community(any_dev.community, e.devices)]
        else:
            bld = primary.extra.get("building_id") if primary is not None and e.building else None
            ids = [d.device_id for d in index.at(compound, e.devices)
                   if bld is None or d.extra.get("building_id") == bld]
            if e.count is not None and len(ids) > e.count:
                start = mix64(key ^ i) % len(ids)
                ids = (ids[start:] + ids[:start])[: e.count]
        if not ids:
            raise ScenarioError(f"{sdef.name}: compound {compound} has no {e.devices} device")
        effect_devices.append(ids)
    inst = Instance(sdef, f"{sdef.name}#{serial}", any_dev.community, compound, start_ms,
                    start_ms + int(sdef.duration_s * 1000), effect_devices)
    for x in sdef.expect:
        if x.place is not None:  # one alert for the place: no device, the compound (or "") and community
            inst.expected.append({
                "rule": x.rule, "severity": x.severity, "device_id": "", "kind": "",
                "compound_id": compound if x.place == "compound" else "", "community": any_dev.community,
                "onset": iso(start_ms + int(x.after_s * 1000)), "onset_ms": start_ms + int(x.after_s * 1000),
                "optional": x.optional, "place": x.place,
            })
            continue
        hit = {d for e, ds in zip(sdef.effects, effect_devices, strict=True) if triggers(x.rule, e) for d in ds}
        for dev_id in sorted(hit):
            dev = index.devices[dev_id]
            if x.devices not in ("all", dev.kind):
                continue
            inst.expected.append({
                "rule": x.rule, "severity": x.severity, "device_id": dev_id, "kind": dev.kind,
                "compound_id": dev.compound_id, "community": dev.community,
                "onset": iso(start_ms + int(x.after_s * 1000)),
                "onset_ms": start_ms + int(x.after_s * 1000), "optional": x.optional,
            })
    return inst
