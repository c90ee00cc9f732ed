"""The simulator's Python entry points: options -> fleet + incidents -> MQTT, with ground truth.

    from simulators.sim import SimOptions, simulate
    simulate(settings, SimOptions(inject=["gas_leak:G-000123@+30"], duration_s=600))
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.contract import Device
from core.registry import system_registry
from core.settings import Settings
from simulators.fleet import Fleet, Realism
from simulators.publisher import RunStats, Sink, run
from simulators.scenarios import (
    Index,
    Instance,
    Placement,
    instantiate,
    iso,
    load_scenario,
    parse_inject,
    parse_spec,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimOptions:
    communities: Sequence[str] = ()
    kinds: Sequence[str] = ()
    compounds: Sequence[str] = ()
    seed: int = 0
    speed: float = 1.0
    duration_s: float | None = None  # simulated seconds; None: until stopped
    start_ms: int | None = None  # simulated start; None: now
    inject: Sequence[str] = ()  # "gas_leak:DEVICE[@+S]"
    scenarios: Sequence[str] = ()  # "NAME_OR_FILE[@place][+start]"
    connections: int = 2
    per_device: bool = False
    qos: int = 0
    realism: Realism = field(default_factory=Realism)
    truth_file: str | None = None  # default <data_dir>/groundtruth/run-<time>-seed<seed>.jsonl
    garbage: float = 0.0  # fraction of extra messages that break the contract
    offline_on_exit: bool = False
    tick_s: float = 0.2


def select(registry: Mapping[str, Device], opts: SimOptions) -> dict[str, Device]:
    return {
        k: d for k, d in registry.items()
        if (not opts.communities or d.community in opts.communities)
        and (not opts.kinds or d.kind in opts.kinds)
        and (not opts.compounds or d.compound_id in opts.compounds)
    }


def placements(opts: SimOptions) -> list[Placement]:
    return [parse_inject(s) for s in opts.inject] + [parse_spec(s) for s in opts.scenarios]


def build(registry: Mapping[str, Device], opts: SimOptions) -> tuple[Fleet, list[Instance]]:
    """The fleet (filtered devices plus every device an incident touches) and its incidents."""
    start_ms = opts.start_ms if opts.start_ms is not None else int(time.time() * 1000)
    chosen = select(registry, opts)
    index = Index(registry)
    instances: list[Instance] = []
    for n, p in enumerate(placements(opts), 1):
        sdef = load_scenario(p.scenario)
        inst = instantiate(sdef, p.place, start_ms + int(p.start_s * 1000), index, opts.seed, n,
                           allowed=chosen or registry)
        instances.append(inst)
        for dev_id in inst.devices:
            chosen.setdefault(dev_id, registry[dev_id])
    return Fleet(chosen.values(), opts.seed, start_ms, opts.realism, instances), instances


def truth_path(settings: Settings, opts: SimOptions, start_ms: int) -> Path:
    if opts.truth_file:
        return Path(opts.truth_file)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start_ms / 1000))
    return settings.data_path / "groundtruth" / f"run-{stamp}-seed{opts.seed}.jsonl"


def write_truth(path: Path, fleet: Fleet, instances: Sequence[Instance], opts: SimOptions) -> None:
    """One `run` header line, then one `scenario` line per incident instance (see README)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    end_ms = fleet.start_ms + int(opts.duration_s * 1000) if opts.duration_s is not None else None
    header: dict[str, Any] = {
        "type": "run", "seed": opts.seed, "speed": opts.speed, "start": iso(fleet.start_ms),
        "start_ms": fleet.start_ms, "end": iso(end_ms) if end_ms else None, "end_ms": end_ms,
        "devices": len(fleet.devices), "communities": list(opts.communities), "kinds": list(opts.kinds),
        "compounds": list(opts.compounds), "garbage": opts.garbage,
        "max_interval_s": max((d.interval_s for d in fleet.devices), default=0),
    }
    with path.open("wb") as fh:
        fh.write(orjson.dumps(header) + b"\n")
        for inst in instances:
            fh.write(orjson.dumps(inst.truth()) + b"\n")


@dataclass(slots=True)
class SimResult:
    stats: RunStats
    truth_file: Path | None
    instances: list[Instance]


def simulate(settings: Settings, opts: SimOptions, stop: threading.Event | None = None,
             registry: Mapping[str, Device] | None = None) -> SimResult:
    """Run the simulator until `opts.duration_s` or `stop`; blocks (run it in a thread if needed)."""
    registry = registry if registry is not None else system_registry(settings)
    fleet, instances = build(registry, opts)
    tpath: Path | None = None
    if instances or opts.truth_file:
        tpath = truth_path(settings, opts, fleet.start_ms)
        write_truth(tpath, fleet, instances, opts)
        log.info("ground truth: %s", tpath)
    for inst in instances:
        log.info("incident %s at %s (%s) from %s to %s", inst.instance_id, inst.compound_id,
                 ",".join(inst.devices[:5]) + ("…" if len(inst.devices) > 5 else ""),
                 iso(inst.start_ms), iso(inst.end_ms))
    extra = None
    if opts.garbage > 0:
        from simulators.garbage import GarbageMixer

        extra = GarbageMixer(registry, fleet, opts.garbage, opts.seed).mix
    sink = Sink(settings, fleet, opts.connections, opts.qos, opts.per_device)
    log.info("simulating %d devices (seed %d, speed %g)", len(fleet.devices), opts.seed, opts.speed)
    try:
        stats = run(fleet, sink, speed=opts.speed, duration_s=opts.duration_s, tick_s=opts.tick_s,
                    stop=stop, extra=extra, offline_on_exit=opts.offline_on_exit)
    finally:
        sink.close()
    return SimResult(stats, tpath, instances)


def inject_gas_leak(settings: Settings, device_id: str, after_s: float = 0.0,
                    duration_s: float | None = None, stop: threading.Event | None = None,
                    **kw: Any) -> SimResult:
    """The demo's one-liner: the whole fleet plus a kitchen gas leak at `device_id`."""
    opts = SimOptions(inject=[f"gas_leak:{device_id}@+{after_s:g}"], duration_s=duration_s, **kw)
    return simulate(settings, opts, stop)
