"""The place trigger's scan: which compounds and communities it finds down, when it waits, folds
or clears, and the communities with devices never heard — over real liveness arrays."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.engine import Condition
from alerts.liveness import Liveness
from alerts.rules import Rule, load_ruleset
from alerts.triggers import Act, Finding, Key, ScanView
from alerts.triggers import place as place_trigger
from core.contract import Device

T0 = 1_800_000_000.0
IV = 10.0
FLEET = {d.device_id: d for d in (
    [Device(f"{c}-{i}", "gas", comm, c, IV, 110.79 + i / 1000, 32.65) for comm, cmps in
     (("yanhu", ("YH-01", "YH-02")), ("yanling", ("YL-01",))) for c in cmps for i in range(4)])}


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return [r for r in load_ruleset().rules if r.trigger == place_trigger.NAME]


def rule(rules: list[Rule], place: str, what: str) -> Rule:
    return next(r for r in rules if r.place == place and r.what == what)


def find(rules: list[Rule], quiet: set[str], *, now: float = T0 + 20, open_: tuple[Key, ...] = (),
         conditions: dict[Key, Condition] | None = None, settled: bool = True, fold_window_s: float = 30.0,
         never: set[str] | None = None) -> dict[Key, Finding]:
    """Devices in `quiet` last heard at T0, the others just now, `never` not at all."""
    live = Liveness(FLEET, {d: (T0 if d in quiet else now) for d in FLEET if d not in (never or set())})
    kw: dict[str, Any] = place_trigger.liveness(rules)
    view = ScanView(now, live, live.scan(now, T0 - 100, **kw), dict.fromkeys(open_), conditions or {},
                    settled=settled, fold_window_s=fold_window_s)
    found = list(place_trigger.scan(rules, view))
    assert len({f.key for f in found}) == len(found)  # one finding per (rule, place)
    return {f.key: f for f in found}


def of(compound: str) -> set[str]:
    return {d for d, dev in FLEET.items() if dev.compound_id == compound}


def test_a_silent_compound_waits_the_fold_window_then_is_raised(rules: list[Rule]) -> None:
    c = rule(rules, "compound", "silent")
    key = (c.name, "YH-01")
    first = find(rules, of("YH-01"))
    assert first == {key: first[key]} and first[key].act is Act.WAIT  # the community may be going down too
    since = Condition(true_since_ts=int((T0 + 20 - 31) * 1000))
    later = find(rules, of("YH-01"), conditions={key: since})
    f = later[key]
    assert f.act is Act.RAISE and f.value == len(of("YH-01")) and f.threshold == c.share
    assert f.place is not None and f.place.compound_id == "YH-01" and f.place.community == "yanhu"
    assert f"{len(of('YH-01'))}/{len(of('YH-01'))}" in f.message
    assert find(rules, of("YH-01"), fold_window_s=0)[key].act is Act.RAISE


def test_a_compound_inside_a_silent_community_is_folded_under_the_community(rules: list[Rule]) -> None:
    m, c = rule(rules, "community", "silent"), rule(rules, "compound", "silent")
    found = find(rules, of("YH-01") | of("YH-02"))
    assert found[(m.name, "yanhu")].act is Act.RAISE  # a community does not wait
    for cmp in ("YH-01", "YH-02"):
        f = found[(c.name, cmp)]
        assert f.act is Act.FOLD and f.parent == (m.name, "yanhu")
    assert not any(k[1] in ("yanling", "YL-01") for k in found)


def test_a_place_back_clears_only_once_every_device_had_time_to_report(rules: list[Rule]) -> None:
    key = (rule(rules, "compound", "silent").name, "YH-01")
    assert find(rules, set(), open_=(key,), settled=False) == {}  # not seeing is not a clear yet
    assert find(rules, set(), open_=(key,))[key].act is Act.CLEAR
    # A place that only waited is forgotten at once.
    assert find(rules, set(), conditions={key: Condition(true_since_ts=int(T0 * 1000))}, settled=False)[key].act \
        is Act.CLEAR


def test_devices_never_heard_are_one_notice_for_their_community(rules: list[Rule]) -> None:
    n = rule(rules, "community", "never_reported")
    never = {"YL-01-0", "YL-01-1"}
    found = find(rules, set(), never=never, now=T0 + 100)
    f = found[(n.name, "yanling")]
    assert f.act is Act.RAISE and f.value == len(never) and f.place is not None and f.place.community == "yanling"
    assert (n.name, "yanhu") not in found
    assert (n.name, "yanling") not in find(rules, set(), never=never, now=T0 - 100 + 2 * IV)  # not yet past its limit
    assert find(rules, set(), open_=((n.name, "yanling"),))[(n.name, "yanling")].act is Act.CLEAR
