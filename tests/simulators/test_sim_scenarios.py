"""Incident library: every scenario validates, does what it says, and writes its ground truth."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from alerts.rules import load_rules
from core.contract import MANHOLE, Device
from core.validation import Event, Status, Telemetry, validate
from simulators.fleet import Fleet
from simulators.scenarios import (
    CONTRACT_RULES,
    Index,
    ScenarioError,
    instantiate,
    library,
    load_scenario,
    parse_inject,
    parse_spec,
)
from simulators.sim import SimOptions, build, write_truth
from tests.simulators.conftest import NOW_MS, sim_settings


def _run(registry: Mapping[str, Device], spec: str, seconds: int, seed: int = 1) -> tuple[Fleet, list, list]:
    opts = SimOptions(scenarios=[spec], seed=seed, start_ms=NOW_MS, compounds=["__none__"])
    fleet, insts = build(registry, opts)
    return fleet, insts, fleet.due(NOW_MS + seconds * 1000)


@pytest.mark.parametrize("name", sorted(library()))
def test_every_scenario_validates_and_has_truth(registry: Mapping[str, Device], name: str) -> None:
    sdef = load_scenario(name)
    _, insts, msgs = _run(registry, name, int(sdef.duration_s) + 30)
    assert len(insts) == 1 and msgs
    for m in msgs:
        validate(m.topic, m.payload, registry, NOW_MS + 600_000)
    truth = insts[0].truth()
    assert truth["scenario"] == name and truth["devices"] and truth["compound_id"]
    if sdef.bait:
        assert truth["expected"] == [] and truth["bait"] is True
    else:
        assert any(not x["optional"] for x in truth["expected"])
        known = set(CONTRACT_RULES) | {r.name for r in load_rules()}  # the contract's and the project's rules
        for x in truth["expected"]:
            assert x["rule"] in known
            if x.get("place"):  # one alert for the place: no device, its compound (or community)
                assert x["device_id"] == "" and x["community"] == truth["community"]
                assert x["compound_id"] == (truth["compound_id"] if x["place"] == "compound" else "")
            else:
                assert x["device_id"] in truth["devices"]


def _telemetry(registry: Mapping[str, Device], msgs: list, dev: str) -> list[Telemetry]:
    out = []
    for m in msgs:
        rec = validate(m.topic, m.payload, registry, NOW_MS)
        if isinstance(rec, Telemetry) and rec.device.device_id == dev:
            out.append(rec)
    return out


def test_gas_leak_inject_ramps_to_31_and_back(registry: Mapping[str, Device]) -> None:
    opts = SimOptions(inject=["gas_leak:G-000123@+60"], start_ms=NOW_MS, compounds=["__none__"])
    fleet, insts = build(registry, opts)
    recs = _telemetry(registry, fleet.due(NOW_MS + 600_000), "G-000123")
    lel = [(r.ts_ms - NOW_MS, float(r.metrics["lel_pct"])) for r in recs]
    assert max(v for t, v in lel if t < 55_000) < 8
    assert all(29 <= v <= 32 for t, v in lel if 100_000 <= t <= 380_000)
    assert lel[-1][1] < 5
    assert {x["rule"]: x["severity"] for x in insts[0].expected} == {"gas_lel_high": "red", "gas_lel_warn": "yellow"}


def test_manhole_incidents_land_on_manhole_detectors_with_their_truth(registry: Mapping[str, Device]) -> None:
    """Biogas reads low and steady (a bait, nothing expected); a leak reads high and swinging and
    expects manhole_gas_leak on that manhole's detector."""
    shape = {}
    for name in ("manhole_biogas", "manhole_gas_leak"):
        _, insts, msgs = _run(registry, name, 1500)
        (dev,) = insts[0].devices
        assert registry[dev].extra["install"] == MANHOLE
        lel = [float(r.metrics["lel_pct"]) for r in _telemetry(registry, msgs, dev) if r.ts_ms - NOW_MS >= 900_000]
        steps = [abs(b - a) for a, b in itertools.pairwise(lel)]
        shape[name] = (sum(lel) / len(lel), max(steps), insts[0].truth())
    mean, step, truth = shape["manhole_biogas"]
    assert 5 <= mean < 10 and step < 1.5 and truth["bait"] and truth["expected"] == []
    mean, step, truth = shape["manhole_gas_leak"]
    assert mean >= 8 and step > 4 and not truth["bait"]
    assert next((x["rule"], x["severity"], x["device_id"], x["optional"]) for x in truth["expected"]) == (
        "manhole_gas_leak", "orange", truth["devices"][0], False)


def test_power_outage_takes_cameras_offline_together(registry: Mapping[str, Device]) -> None:
    _, insts, msgs = _run(registry, "power_outage@YL-03+10", 120)
    cams = {d for d in insts[0].devices if d.startswith("C")}
    assert cams
    offline = {m.device_id for m in msgs if m.kind == "status" and b'"offline"' in m.payload}
    assert offline == cams
    volts = [float(r.metrics["voltage_v"]) for m in msgs if m.kind == "telemetry" and m.t_ms > NOW_MS + 12_000
             for r in [validate(m.topic, m.payload, registry, NOW_MS)] if isinstance(r, Telemetry)
             and r.device.kind == "power"]
    assert volts and max(volts) == 0


def test_camera_sabotage_tamper_then_offline(registry: Mapping[str, Device]) -> None:
    _, insts, msgs = _run(registry, "camera_sabotage", 120)
    cam = insts[0].devices[0]
    recs = [validate(m.topic, m.payload, registry, NOW_MS) for m in msgs if m.device_id == cam]
    ev = [r for r in recs if isinstance(r, Event)]
    st = [r for r in recs if isinstance(r, Status)]
    assert [e.event for e in ev] == ["tamper"] and [s.state for s in st] == ["offline"]
    assert st[0].ts_ms - ev[0].ts_ms == 30_000
    assert not [r for r in recs if isinstance(r, Telemetry) and r.ts_ms > st[0].ts_ms + 5_000]


def test_compound_silent_stops_all_and_emulates_wills(registry: Mapping[str, Device]) -> None:
    _, insts, msgs = _run(registry, "compound_silent@YL-01", 120)
    devs = set(insts[0].devices)
    assert devs == {d.device_id for d in registry.values() if d.compound_id == "YL-01"}
    assert not [m for m in msgs if m.device_id in devs and m.kind == "telemetry"]
    wills = [m for m in msgs if m.device_id in devs and m.kind == "status"]
    assert {m.device_id for m in wills} == devs
    assert all(orjson.loads(m.payload) == {"state": "offline"} for m in wills)  # will: no ts
    # One alert for the compound is expected, not one per device (folded: alerts/rules.yaml).
    assert [(x["rule"], x["device_id"], x["compound_id"], x["place"]) for x in insts[0].expected] == [
        ("compound_silent", "", "YL-01", "compound")]


def test_several_scenarios_at_places_and_times(registry: Mapping[str, Device], tmp_path: Path) -> None:
    opts = SimOptions(
        scenarios=["water_main_burst@GY-01+30", "electrical_overload@P-000020+1m", "bait_spike"],
        inject=["gas_leak:G-000123@+5"], seed=9, start_ms=NOW_MS, duration_s=900,
    )
    fleet, insts = build(registry, opts)
    assert [i.sdef.name for i in insts] == ["gas_leak", "water_main_burst", "electrical_overload", "bait_spike"]
    assert [i.start_ms - NOW_MS for i in insts] == [5000, 30000, 60000, 0]
    assert insts[1].compound_id == "GY-01" and insts[2].devices == ["P-000020"]
    path = tmp_path / "truth.jsonl"
    write_truth(path, fleet, insts, opts)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["type"] == "run" and lines[0]["start_ms"] == NOW_MS and lines[0]["seed"] == 9
    for doc in lines[1:]:
        assert {"scenario", "instance", "devices", "compound_id", "community", "start", "end", "start_ms",
                "end_ms", "expected", "bait"} <= set(doc)
        for x in doc["expected"]:
            assert {"rule", "severity", "device_id", "onset", "onset_ms", "optional"} <= set(x)
    burst = lines[2]
    assert [x["rule"] for x in burst["expected"]] == ["water_leak", "main_burst"]
    assert burst["expected"][1]["device_id"] == "" and burst["expected"][1]["compound_id"] == "GY-01"


def test_simulate_writes_truth_under_data_dir(registry: Mapping[str, Device], tmp_path: Path) -> None:
    from simulators.sim import truth_path

    s = sim_settings(tmp_path / "var")
    p = truth_path(s, SimOptions(seed=4), NOW_MS)
    assert p.parent == (tmp_path / "var" / "groundtruth").resolve() and p.name.endswith("seed4.jsonl")


def test_specs_and_errors(registry: Mapping[str, Device]) -> None:
    assert parse_spec("power_outage@YL-03+90") == parse_spec("power_outage@YL-03+1.5m")
    assert parse_spec("x.yaml").place is None and parse_spec("bait_spike+30").start_s == 30
    assert parse_inject("gas_leak:G-000001@+30").start_s == 30
    idx = Index(registry)
    with pytest.raises(ScenarioError):
        instantiate(load_scenario("gas_leak"), "NO-SUCH", NOW_MS, idx, 0, 1)
    with pytest.raises(ScenarioError):
        instantiate(load_scenario("gas_leak"), "P-000001", NOW_MS, idx, 0, 1)
    with pytest.raises(ScenarioError):
        load_scenario("no_such_scenario")


def test_custom_scenario_file(registry: Mapping[str, Device], tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nkind: power\nduration_s: 60\neffects:\n"
                 "  - {devices: power, metric: temp_c, mode: set, value: 80}\n"
                 "expect:\n  - {rule: power_temp_high}\n", encoding="utf-8")
    _, insts, msgs = _run(registry, f"{f}@P-000002", 60)
    assert insts[0].expected[0]["severity"] == "orange"
    temps = [float(r.metrics["temp_c"]) for r in _telemetry(registry, msgs, "P-000002")]
    assert temps and set(temps) == {80.0}
