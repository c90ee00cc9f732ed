"""Every garbage generator's tag agrees with validate(); together they cover every reason."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from core.contract import KINDS, MAX_PAYLOAD_BYTES, Device, Reason
from core.validation import Rejected, validate
from simulators.fleet import Fleet
from simulators.garbage import GENERATORS, GarbageMixer, generate, pick_other
from tests.simulators.conftest import NOW_MS


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_reason_agrees_with_validate(registry: Mapping[str, Device], name: str) -> None:
    devs = list(registry.values())
    for kind in KINDS:
        dev = next(d for d in devs if d.kind == kind)
        g = generate(name, dev, pick_other(dev, devs), NOW_MS, 7)
        with pytest.raises(Rejected) as exc:
            validate(g.topic, g.payload, registry, NOW_MS)
        assert exc.value.reason == g.reason, (name, kind, exc.value)
        assert "+" not in g.topic and "#" not in g.topic  # publishable


def test_every_reason_and_special_payloads_covered() -> None:
    assert {r for r, _ in GENERATORS.values()} == set(Reason)
    assert {"json_oversized", "json_binary", "topic_extra_level", "topic_sql_injection"} <= set(GENERATORS)


def test_special_payloads(registry: Mapping[str, Device]) -> None:
    dev = registry["G-000001"]
    assert len(generate("json_oversized", dev, dev, NOW_MS).payload) > MAX_PAYLOAD_BYTES
    with pytest.raises(UnicodeDecodeError):
        generate("json_binary", dev, dev, NOW_MS).payload.decode()
    assert generate("topic_extra_level", dev, dev, NOW_MS).topic == "sc/yanling/gas/G-000001/telemetry/x"


def test_mixer_rate_and_sample_agreement(registry: Mapping[str, Device]) -> None:
    fleet = Fleet(list(registry.values())[:500], 1, NOW_MS)
    mixer = GarbageMixer(registry, fleet, 0.2, 1)
    good = bad = 0
    for t in range(0, 120_001, 1000):
        batch = fleet.due(NOW_MS + t)
        extra = mixer.mix(batch)
        good += len(batch)
        bad += len(extra)
        for m in extra[:3]:
            with pytest.raises(Rejected):
                validate(m.topic, m.payload, registry, NOW_MS + t)
    assert abs(bad / (good + bad) - 0.2) < 0.02
    assert set(mixer.tagged) == set(Reason)
