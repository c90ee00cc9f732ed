"""The rule engine's logic for every default rule, on a controlled clock and a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from alerts.engine import Engine
from alerts.rules import RuleError, load_rules
from alerts.store import AlertStore, open_store
from core.contract import Alert, Device
from core.validation import Event, Status, Telemetry

GAS = Device("G-1", "gas", "yanling", "YL-01", 10, 110.79, 32.65)
POWER = Device("P-1", "power", "yanling", "YL-01", 15, 110.79, 32.65)
WATER = Device("W-1", "water", "yanhu", "YH-01", 30, 110.79, 32.65)
CAM = Device("C-1", "camera", "yanhu", "YH-01", 30, 110.79, 32.65)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(store_url: str):  # type: ignore[no-untyped-def]
    """On each backend: the SQLite file, then PostgreSQL."""
    clock = Clock()
    store = open_store(store_url)
    published: list[Alert] = []
    engine = Engine(load_rules(), store, published.append, holdoff_s=60, update_min_s=0, clock=clock)
    yield engine, clock, published, store
    store.close()


def tel(dev: Device, clock: Clock, **m: float | bool) -> Telemetry:
    return Telemetry(dev, int(clock.t * 1000), None, dict(m))


def test_gas_warn_needs_30_seconds_of_device_time(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    for _ in range(3):  # 0, 10, 20 s: not yet
        engine.handle(tel(GAS, clock, lel_pct=12.0))
        clock.t += 10
    assert not [a for a in published if a.rule == "gas_lel_warn"]
    engine.handle(tel(GAS, clock, lel_pct=12.0))  # 30 s
    warn = [a for a in published if a.rule == "gas_lel_warn"]
    assert len(warn) == 1 and warn[0].severity == "yellow"


def test_gas_warn_timer_restarts_when_it_dips(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    for v in (12, 12, 5, 12, 12, 12):
        engine.handle(tel(GAS, clock, lel_pct=float(v)))
        clock.t += 10
    assert not [a for a in published if a.rule == "gas_lel_warn"]


@pytest.mark.parametrize(("dev", "metrics", "rule", "severity"), [
    (POWER, {"leakage_ma": 350.0}, "power_leakage_high", "orange"),
    (POWER, {"temp_c": 71.0}, "power_temp_high", "orange"),
    (WATER, {"leak": True}, "water_leak", "orange"),
    (CAM, {"online": False}, "camera_offline", "yellow"),
])
def test_threshold_rules(rig, dev, metrics, rule, severity) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    engine.handle(tel(dev, clock, **metrics))
    got = [a for a in published if a.rule == rule]
    assert len(got) == 1 and got[0].severity == severity and got[0].device_id == dev.device_id


def test_below_threshold_raises_nothing(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    engine.handle(tel(POWER, clock, leakage_ma=299.0, temp_c=69.9))
    engine.handle(tel(WATER, clock, leak=False))
    engine.handle(tel(CAM, clock, online=True))
    assert published == []


def test_camera_offline_by_status_then_back(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    engine.handle(Status(CAM, int(clock.t * 1000), "offline", from_will=True))
    assert [a.rule for a in published] == ["camera_offline"]
    engine.handle(Status(CAM, int(clock.t * 1000), "online", from_will=False))
    clock.t += 59
    engine.tick()
    assert published[-1].state == "active"
    clock.t += 2
    engine.tick()
    assert published[-1].state == "resolved"


def test_camera_tamper_event(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    engine.handle(Event(CAM, int(clock.t * 1000), "tamper", "镜头被遮挡"))
    engine.handle(Event(CAM, int(clock.t * 1000), "motion", ""))
    assert [a.rule for a in published] == ["camera_tamper"]
    assert "镜头被遮挡" in published[0].message


def test_device_silent_after_three_intervals(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    registry = {GAS.device_id: GAS}
    engine.handle(tel(GAS, clock, lel_pct=0.0))
    clock.t += 29
    engine.check_silence(registry)
    assert published == []
    clock.t += 2
    engine.check_silence(registry)
    engine.check_silence(registry)  # still one alert
    silent = [a for a in published if a.rule == "device_silent"]
    assert len(silent) == 1 and silent[0].severity == "blue"
    engine.handle(tel(GAS, clock, lel_pct=0.0))  # it talks again
    clock.t += 61
    engine.tick()
    assert published[-1].rule == "device_silent" and published[-1].state == "resolved"


def test_ack_by_hand_survives_engine_updates(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, store = rig
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    alert_id = published[0].alert_id
    acked = store.acknowledge(alert_id, "值班员张", "已派人", "2026-11-25T03:00:00Z")
    assert acked is not None
    engine.adopt(acked)  # a staff command: the service applies it and hands it to the engine
    clock.t += 1
    engine.handle(tel(GAS, clock, lel_pct=35.0))
    assert published[-1].alert_id == alert_id
    assert published[-1].state == "acknowledged" and published[-1].value == 35.0
    assert published[-1].acked_by == "值班员张"


def test_resolved_by_hand_while_still_high_reopens_the_same_alert(rig) -> None:  # type: ignore[no-untyped-def]
    # A close by hand with no watch of its own (the store's bare resolve) is watched all the same: the
    # condition still true reopens the same incident; once the watch has run out, a new one.
    engine, clock, published, store = rig
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    first = published[0].alert_id
    engine.adopt(store.resolve(first, "2026-11-25T03:00:00Z", by="张三"))  # type: ignore[arg-type]
    clock.t += 1
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    assert published[-1].alert_id == first and published[-1].state == "active" and published[-1].reopened == 1
    engine.adopt(store.resolve(first, "2026-11-25T03:00:05Z", by="张三"))  # type: ignore[arg-type]
    clock.t += 1801  # gas: a 30 min watch
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    assert published[-1].alert_id != first and published[-1].state == "active" and published[-1].reopened == 0


def test_bad_rules_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text("rules:\n  - name: x\n    kind: gas\n    metric: voltage_v\n    op: '>='\n"
                 "    threshold: 1\n    severity: red\n    message: m\n")
    with pytest.raises(RuleError, match="not a gas metric"):
        load_rules(p)
    p.write_text("rules:\n  - name: x\n    kind: gas\n    metric: lel_pct\n    op: '>='\n"
                 "    threshold: 1\n    severity: purple\n    message: m\n")
    with pytest.raises(RuleError, match="severity"):
        load_rules(p)


def test_serious_alerts_name_what_is_near(tmp_path: Path) -> None:
    """A leak next to a unit names it, from the real sample layers."""
    from alerts.context import Surroundings
    from geodata.layers import load_bundled_layers
    from geodata.spatial import spatial_index

    layers = load_bundled_layers()
    unit = layers.units.iloc[0]
    dev = Device("G-9", "gas", str(unit["community"]), "X", 10, unit.geometry.x, unit.geometry.y)
    store = AlertStore(tmp_path / "a.sqlite")
    published: list[Alert] = []
    around = Surroundings(200, spatial_index(layers)).around
    engine = Engine(load_rules(), store, published.append, 60, 0, clock=Clock(), surroundings=around)
    engine.handle(Telemetry(dev, 1, None, {"lel_pct": 40.0}))
    alert = published[0]
    assert alert.nearby is not None
    assert alert.nearby["units"][0]["name"] == unit["name"] and alert.nearby["units"][0]["distance_m"] == 0
    assert unit["name"] in alert.message
    assert store.get(alert.alert_id).nearby == alert.nearby  # type: ignore[union-attr]
    store.close()


def test_unacknowledged_red_alert_escalates_tier_by_tier(tmp_path: Path) -> None:
    from alerts.notify import Escalation, Notifier, load_roster

    clock = Clock()
    store = AlertStore(tmp_path / "a.sqlite")
    published: list[Alert] = []
    outbox = tmp_path / "outbox.jsonl"
    esc = Escalation(load_roster(), Notifier(outbox))
    engine = Engine(load_rules(), store, published.append, 60, 0, clock=clock, escalation=esc)
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    clock.t += 119
    engine.tick()
    clock.t += 2  # 121 s unacknowledged: red escalates after 120 s
    engine.tick()
    assert published[-1].escalation_tier == 2
    clock.t += 120
    engine.tick()
    assert published[-1].escalation_tier == 3
    notes = [orjson.loads(line) for line in outbox.read_bytes().splitlines()]
    assert [(n["event"], n["tier"]) for n in notes] == [("raised", 1), ("escalated", 2), ("escalated", 3)]
    assert notes[0]["to"][0]["name"] == "岩岭社区值班员"
    assert notes[1]["to"][0]["name"] == "车城路街道指挥中心值班长"
    assert "一级" in notes[0]["text"]
    store.close()


def test_acknowledged_alert_does_not_escalate(tmp_path: Path) -> None:
    from alerts.notify import Escalation, Notifier, load_roster

    clock = Clock()
    store = AlertStore(tmp_path / "a.sqlite")
    published: list[Alert] = []
    esc = Escalation(load_roster(), Notifier(tmp_path / "outbox.jsonl"))
    engine = Engine(load_rules(), store, published.append, 60, 0, clock=clock, escalation=esc)
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    engine.adopt(store.acknowledge(published[0].alert_id, "张三", None, "2026-11-25T03:00:00Z"))  # type: ignore[arg-type]
    clock.t += 600
    engine.tick()
    assert all((a.escalation_tier or 1) == 1 for a in published)
    store.close()


def test_warning_is_superseded_by_the_critical_alarm(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    for _ in range(4):  # 30 s at 12 %LEL: the yellow warning
        engine.handle(tel(GAS, clock, lel_pct=12.0))
        clock.t += 10
    warn = [a for a in published if a.rule == "gas_lel_warn"]
    assert len(warn) == 1
    engine.handle(tel(GAS, clock, lel_pct=30.0))  # now critical: the warning is closed, not doubled
    last_warn = [a for a in published if a.rule == "gas_lel_warn"][-1]
    assert last_warn.state == "resolved" and "燃气浓度超限" in (last_warn.note or "")  # the rule by its title
    for _ in range(5):  # still above 10 and 25 for a long time: only the red alarm stays open
        clock.t += 10
        engine.handle(tel(GAS, clock, lel_pct=30.0))
    assert {k[0] for k in engine.open} == {"gas_lel_high"}


def test_silence_clock_restarts_when_our_feed_is_restored(rig) -> None:  # type: ignore[no-untyped-def]
    """After a broker outage the devices are not silent: our subscription was."""
    engine, clock, published, _ = rig
    registry = {GAS.device_id: GAS}
    engine.handle(tel(GAS, clock, lel_pct=0.0))
    clock.t += 100  # the broker was down all this time
    engine.feed_restored()
    clock.t += 25
    engine.check_silence(registry)
    assert published == []
    clock.t += 6  # 31 s after the feed came back: now it is the device
    engine.check_silence(registry)
    assert [a.rule for a in published] == ["device_silent"]


def test_offline_will_does_not_end_a_silence(rig) -> None:  # type: ignore[no-untyped-def]
    """A network cut: silence raised, then the broker's offline will arrives; still silent."""
    engine, clock, published, _ = rig
    registry = {GAS.device_id: GAS}
    engine.handle(tel(GAS, clock, lel_pct=0.0))
    clock.t += 31
    engine.check_silence(registry)
    engine.handle(Status(GAS, int(clock.t * 1000), "offline", from_will=True))
    for _ in range(10):  # well past the hold-off
        clock.t += 10
        engine.tick()
        engine.check_silence(registry)
    silent = [a for a in published if a.rule == "device_silent"]
    assert len({a.alert_id for a in silent}) == 1 and silent[-1].state == "active"


def test_offline_camera_is_one_alert_not_two(rig) -> None:  # type: ignore[no-untyped-def]
    engine, clock, published, _ = rig
    engine.handle(Status(CAM, int(clock.t * 1000), "offline", from_will=True))
    clock.t += 200
    engine.check_silence({CAM.device_id: CAM})
    assert [a.rule for a in published] == ["camera_offline"]


def test_a_kind_without_rules_is_simply_not_evaluated(tmp_path: Path) -> None:
    """A rules file with gas rules only: a water message must pass through, not crash the engine."""
    p = tmp_path / "rules.yaml"
    p.write_text("rules:\n  - name: g\n    kind: gas\n    metric: lel_pct\n    op: '>='\n"
                 "    threshold: 25\n    severity: red\n    message: m\n")
    store = AlertStore(tmp_path / "a.sqlite")
    published: list[Alert] = []
    engine = Engine(load_rules(p), store, published.append, 60, 0, clock=Clock())
    engine.handle(Telemetry(WATER, 1, None, {"leak": True}))
    engine.handle(Telemetry(GAS, 1, None, {"lel_pct": 30.0}))
    assert [a.rule for a in published] == ["g"]
    store.close()


def test_an_open_alert_is_published_on_news_only(rig) -> None:  # type: ignore[no-untyped-def]
    """A reading that moves within its band (10 % of the threshold) is no news; a new band, a higher
    severity or new wording is."""
    engine, clock, published, _ = rig
    engine.handle(tel(GAS, clock, lel_pct=31.0))
    high = lambda: [a for a in published if a.rule == "gas_lel_high"]  # noqa: E731
    assert len(high()) == 1
    for v in (31.4, 30.1, 32.4, 31.0):  # all within 30.0..32.5 %LEL
        clock.t += 10
        engine.handle(tel(GAS, clock, lel_pct=v))
    assert len(high()) == 1
    clock.t += 10
    engine.handle(tel(GAS, clock, lel_pct=40.0))
    assert len(high()) == 2 and high()[-1].value == 40.0


def test_an_unacknowledged_red_alert_reminds_everyone_told_until_acknowledged(tmp_path: Path) -> None:
    """Past its last tier, a red alert nobody acknowledged is told again every remind_every_s.red (300 s
    in the bundled roster) to everyone it has reached; an acknowledgement stops the reminders."""
    from alerts.notify import Escalation, Notifier, load_roster

    clock = Clock()
    store = AlertStore(tmp_path / "a.sqlite")
    outbox = tmp_path / "outbox.jsonl"
    roster = load_roster()
    assert roster.remind_every_s["red"] == 300
    engine = Engine(load_rules(), store, [].append, 60, 0, clock=clock, escalation=Escalation(roster, Notifier(outbox)))
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    aid = next(iter(engine.open.values())).alert_id
    for _ in range(13 * 60 // 5):  # 13 minutes of ticks every 5 s
        clock.t += 5
        engine.tick()
    notes = [orjson.loads(line) for line in outbox.read_bytes().splitlines()]
    events = [(n["event"], n["tier"]) for n in notes]
    # raised; tiers 2 and 3 at 2 and 4 min; reminders at 9 and 14 min would be next: one by 13 min (at 9)
    assert events == [("raised", 1), ("escalated", 2), ("escalated", 3), ("reminder", 3)], events
    assert {p["name"] for p in notes[-1]["to"]} >= {"岩岭社区值班员", "车城路街道指挥中心值班长"}
    assert "再次提醒" in notes[-1]["text"]
    assert [s.event for s in store.timeline(aid)].count("reminded") == 1
    engine.adopt(store.acknowledge(aid, "张三", None, "2026-12-03T00:00:00.000Z"))  # type: ignore[arg-type]
    for _ in range(20 * 60 // 5):
        clock.t += 5
        engine.tick()
    assert len(outbox.read_bytes().splitlines()) == len(notes)  # acknowledged: no more reminders
    store.close()
