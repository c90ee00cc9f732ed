"""Baseline telemetry: deterministic, contract-valid, plausible."""

from __future__ import annotations

from collections.abc import Mapping

from core.contract import KINDS, Device
from core.timebase import beijing_hour as local_hour
from core.validation import Status, Telemetry, validate
from simulators.fleet import Fleet, Realism
from simulators.model import baseline, cooking, make_profile
from tests.simulators.conftest import NOW_MS


def _sample(registry: Mapping[str, Device], per_kind: int = 60) -> list[Device]:
    out: list[Device] = []
    for k in KINDS:
        out += [d for d in registry.values() if d.kind == k][:per_kind]
    return out


def test_same_seed_same_messages(registry: Mapping[str, Device]) -> None:
    devs = _sample(registry)
    a = Fleet(devs, 42, NOW_MS).due(NOW_MS + 120_000)
    b = Fleet(devs, 42, NOW_MS).due(NOW_MS + 120_000)
    c = Fleet(devs, 43, NOW_MS).due(NOW_MS + 120_000)
    assert [(m.topic, m.payload) for m in a] == [(m.topic, m.payload) for m in b]
    assert [m.payload for m in a] != [m.payload for m in c]


def test_tick_size_does_not_change_output(registry: Mapping[str, Device]) -> None:
    devs = _sample(registry, 20)
    whole = Fleet(devs, 1, NOW_MS).due(NOW_MS + 90_000)
    f = Fleet(devs, 1, NOW_MS)
    ticked = [m for t in range(0, 90_001, 200) for m in f.due(NOW_MS + t)]
    assert [m.payload for m in whole] == [m.payload for m in ticked]


def test_baseline_of_every_kind_validates(registry: Mapping[str, Device]) -> None:
    fleet = Fleet(registry.values(), 7, NOW_MS)
    msgs = fleet.initial()[:50] + fleet.due(NOW_MS + 60_000)
    seen = set()
    for m in msgs:
        rec = validate(m.topic, m.payload, registry, NOW_MS)
        assert isinstance(rec, Telemetry | Status)
        if isinstance(rec, Telemetry):
            seen.add(rec.device.kind)
    assert seen == set(KINDS)


def test_every_device_reports_at_its_interval(registry: Mapping[str, Device]) -> None:
    devs = _sample(registry, 30)
    msgs = Fleet(devs, 3, NOW_MS, Realism.off()).due(NOW_MS + 300_000)
    for d in devs:
        n = sum(1 for m in msgs if m.device_id == d.device_id)
        assert abs(n - 300 / d.interval_s) <= 1, (d.device_id, n)


def test_baselines_stay_below_alert_thresholds(registry: Mapping[str, Device]) -> None:
    devs = _sample(registry, 40)
    for d in devs:
        p = make_profile(d, 0)
        for hour in range(0, 24):
            t = NOW_MS + hour * 3_600_000
            m = baseline(p, t, hour)
            if d.kind == "gas":
                assert 0 <= float(m["lel_pct"]) < 8
            elif d.kind == "power":
                assert 200 < float(m["voltage_v"]) < 235
                assert float(m["temp_c"]) < 65 and float(m["leakage_ma"]) < 100
            elif d.kind == "water":
                assert m["leak"] is False and 0.1 < float(m["pressure_mpa"]) < 0.6
            else:
                assert m["online"] is True


def test_daily_curves() -> None:
    assert local_hour(NOW_MS) == 12 + 10 / 60  # Asia/Shanghai
    assert cooking(12.0) > 0.9 and cooking(18.0) > 0.9 and cooking(3.0) < 0.01


def test_realism_duplicates_and_reordering(registry: Mapping[str, Device]) -> None:
    gas = [d for d in registry.values() if d.kind == "gas"][:300]
    msgs = Fleet(gas, 5, NOW_MS, Realism(p_duplicate=0.02, p_reorder=0.02)).due(NOW_MS + 600_000)
    payloads = [m.payload for m in msgs]
    assert len(payloads) > len(set(payloads))  # duplicates
    import orjson

    last: dict[str, int] = {}
    reordered = 0
    for m in msgs:
        seq = orjson.loads(m.payload)["seq"]
        reordered += seq < last.get(m.device_id, -1)
        last[m.device_id] = max(seq, last.get(m.device_id, -1))
    assert reordered > 0
