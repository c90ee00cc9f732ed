"""Inhibition (alerts/inhibit.py): an open power outage mutes the low water pressure and camera alerts of its
own compound — raised and recorded, not published nor notified — never a life-safety alarm, and the muted
alert comes back by itself (published, notified) if still open when the outage ends; a restart keeps it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts import inhibit
from alerts.delivery import outbox_path
from alerts.engine import Engine
from alerts.notify import Escalation, Notifier, load_roster
from alerts.rules import BUNDLED_RULES, RuleError, load_ruleset
from alerts.store import Store, open_store
from alerts.timeline import Event as Step
from core.contract import ALERT_TOPIC_ROOT, Alert
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from core.validation import Status, Telemetry
from tests.alerts.test_engine import Clock
from tests.alerts.triggers.test_group import FLEET, NORMAL
from tests.conftest import Collector, RunningAlerts, feed, wait_until

OUTAGE = ("P0", "P1", "P2")  # every power meter of YL-01
CAMS = ("C0", "C1", "C2", "C3")
LOW = {"pressure_mpa": 0.12}  # booster pumps stopped: below 0.14 MPa, above a burst's collapse


class Rig:
    """The real engine with the bundled rules (or `rules`), a real store, escalation into an outbox."""

    def __init__(self, tmp_path: Path, store: Store, rules: Path | None = None) -> None:
        self.tmp, self.rules = tmp_path, rules
        self.clock = Clock()
        self.store = store
        self.published: list[Alert] = []
        self.outbox = tmp_path / "outbox.jsonl"
        self.over: dict[str, dict[str, float | bool]] = {}
        self.quiet: set[str] = set()
        self.engine = self.start()

    def start(self) -> Engine:
        esc = Escalation(load_roster(), Notifier(self.outbox))
        return Engine(load_ruleset(self.rules), self.store, self.published.append, 60, 0, clock=self.clock,
                      escalation=esc, fold_window_s=30)

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds // 5)):
            self.clock.t += 5
            for d in FLEET.values():
                if d.device_id not in self.quiet:
                    m = {**NORMAL[d.kind], **self.over.get(d.device_id, {})}
                    self.engine.handle(Telemetry(d, int(self.clock.t * 1000), None, m))  # type: ignore[arg-type]
            self.engine.tick()
            self.engine.check_silence(FLEET)

    def outage(self, on: bool) -> None:
        for p in OUTAGE:
            if on:
                self.over[p] = {"voltage_v": 0.0}
            else:
                self.over.pop(p, None)
        for c in CAMS:
            if on:
                self.quiet.add(c)
                self.engine.handle(Status(FLEET[c], int(self.clock.t * 1000), "offline", from_will=True))
            else:
                self.quiet.discard(c)

    def told(self) -> list[tuple[str, str]]:
        """(event, alert_id) of every notification in the outbox."""
        if not self.outbox.exists():
            return []
        return [(e["event"], e["alert_id"]) for e in map(orjson.loads, self.outbox.read_bytes().splitlines())]

    def one(self, rule: str, subject: str) -> Alert:
        (a,) = [a for a in self.store.list(limit=1000) if a.rule == rule and subject in (a.device_id, a.compound_id)]
        return a

    def published_ids(self) -> set[str]:
        return {a.alert_id for a in self.published if a.state != "resolved"}


@pytest.fixture
def rig(tmp_path: Path, store_url: str) -> Rig:
    r = Rig(tmp_path, open_store(store_url))
    r.run(60)
    assert not r.published
    return r


def muted_in_outage(rig: Rig) -> tuple[Alert, Alert, Alert]:
    """Power lost in YL-01 with its water pressure low, and low water pressure in YL-02 (power fine there)."""
    rig.outage(True)
    rig.over["W0"] = dict(LOW)  # YL-01, where the power went
    rig.over["W1"] = dict(LOW)  # YL-02, whose power is fine
    rig.run(120)
    return rig.one("power_outage", "YL-01"), rig.one("water_pressure_low", "W0"), rig.one("water_pressure_low", "W1")


def test_an_outage_mutes_its_own_compounds_water_pressure_not_another_compounds(rig: Rig) -> None:
    outage, w0, w1 = muted_in_outage(rig)
    # Raised and recorded, marked with its cause, a timeline step naming it ...
    assert w0.state == "active" and w0.message.endswith("｜因「疑似停电」抑制")
    step = next(s for s in rig.store.timeline(w0.alert_id) if s.event == Step.INHIBITED)
    assert step.data["cause"] == outage.alert_id and step.note == "因「疑似停电」抑制"
    assert rig.engine.inhibited == {w0.alert_id: outage.alert_id}
    # ... but neither published nor notified; the other compound's is, and so is the outage.
    assert rig.published_ids() == {outage.alert_id, w1.alert_id}
    told = {aid for _, aid in rig.told()}
    assert outage.alert_id in told and w1.alert_id in told and w0.alert_id not in told
    assert not inhibit.marked(w1.message)
    # The one decision the dashboard and /api ask too: W0's cause is the outage, W1 has none.
    idx = inhibit.Index(load_ruleset().inhibits, rig.store.open_alerts().values())
    assert idx.cause(w0) == outage and idx.cause(w1) is None
    rig.clock.t += 3600  # past every escalation time: a muted alert never escalates
    rig.run(5)
    assert w0.alert_id not in {aid for _, aid in rig.told()}


def test_a_life_safety_alarm_is_never_muted(tmp_path: Path, store_url: str) -> None:
    """YL-01's low water pressure made red by an override (a hospital's supply, say): life-safety, so the
    outage does not mute it; the compound's gas warning is never a target either."""
    text = BUNDLED_RULES.read_text(encoding="utf-8").replace(
        "overrides: []", "overrides:\n  - {rule: water_pressure_low, compound: YL-01, severity: red}")
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    rig = Rig(tmp_path, open_store(store_url), rules)
    rig.run(60)
    rig.over["G0"] = {"lel_pct": 12.0}  # gas warning in the compound that loses power
    outage, w0, _ = muted_in_outage(rig)
    warn = rig.one("gas_lel_warn", "G0")
    assert w0.severity == "red" and not inhibit.marked(w0.message)
    assert {w0.alert_id, warn.alert_id, outage.alert_id} <= rig.published_ids()
    assert not rig.engine.inhibited
    assert not [s for a in (w0, warn) for s in rig.store.timeline(a.alert_id) if s.event == Step.INHIBITED]


def test_back_by_itself_when_the_outage_ends_if_still_open(rig: Rig) -> None:
    outage, w0, _ = muted_in_outage(rig)
    rig.outage(False)  # power back; W0's pressure stays low (a pump that did not restart)
    rig.run(150)
    assert rig.store.get(outage.alert_id).state == "resolved"  # type: ignore[union-attr]
    back = rig.store.get(w0.alert_id)
    assert back is not None and back.state == "active" and not inhibit.marked(back.message)
    assert rig.store.timeline(w0.alert_id)[-1].event == Step.UNINHIBITED
    assert w0.alert_id in rig.published_ids() and ("raised", w0.alert_id) in rig.told()
    assert not rig.engine.inhibited


def test_not_told_when_it_closed_while_muted(rig: Rig) -> None:
    outage, w0, _ = muted_in_outage(rig)
    rig.over.pop("W0")  # pressure back during the outage (the city main alone): W0 clears and resolves
    rig.run(90)
    assert rig.store.get(w0.alert_id).state == "resolved"  # type: ignore[union-attr]
    rig.outage(False)
    rig.run(150)
    assert rig.store.get(outage.alert_id).state == "resolved"  # type: ignore[union-attr]
    assert w0.alert_id not in rig.published_ids() and w0.alert_id not in {aid for _, aid in rig.told()}
    assert Step.UNINHIBITED not in [s.event for s in rig.store.timeline(w0.alert_id)]


def test_a_restart_keeps_it_muted_and_brings_it_back_when_the_cause_is_gone(rig: Rig) -> None:
    outage, w0, _ = muted_in_outage(rig)
    rig.engine = rig.start()  # a new service on the same store, the outage still open
    assert rig.engine.inhibited == {w0.alert_id: outage.alert_id}
    rig.published.clear()
    rig.engine.republish()  # retained copies re-sent on connect: not the muted one
    rig.run(10)
    assert outage.alert_id in rig.published_ids() and w0.alert_id not in rig.published_ids()
    rig.outage(False)  # the power comes back while the restarted service runs
    rig.run(150)
    rig.engine = rig.start()  # and once more: back, it stays back
    assert rig.store.get(outage.alert_id).state == "resolved"  # type: ignore[union-attr]
    assert w0.alert_id in rig.published_ids() and ("raised", w0.alert_id) in rig.told()
    assert not rig.engine.inhibited  # back, and stays back after the restart


def test_cause_gone_while_the_service_was_down(rig: Rig) -> None:
    """The outage closed by hand while the service was stopped: the next run brings W0 back at its first tick."""
    outage, w0, _ = muted_in_outage(rig)
    rig.store.resolve(outage.alert_id, "2026-12-04T00:00:00Z", note="来电", by="值班员")
    rig.engine = rig.start()
    assert rig.engine.inhibited == {w0.alert_id: outage.alert_id}
    rig.run(5)
    assert not rig.engine.inhibited and ("raised", w0.alert_id) in rig.told()
    assert rig.store.timeline(w0.alert_id)[-1].event == Step.UNINHIBITED


@pytest.mark.parametrize(("entry", "says"), [
    ("- {name: x, source: {rules: [power_outage]}, target: {rules: [gas_lel_warn]}, equal: [compound_id]}",
     "life-safety"),
    ("- {name: x, source: {rules: [power_outage]}, target: {rules: [camera_offline], kinds: [gas]},"
     " equal: [compound_id]}", "life-safety"),
    ("- {name: x, source: {rules: [power_outage]}, target: {rules: [no_such_rule]}, equal: [compound_id]}",
     "unknown rules ['no_such_rule']"),
    ("- {name: x, source: {rules: [power_outage]}, target: {rules: [camera_offline]}, equal: [street]}",
     "equal is a non-empty list"),
    ("- {name: x, source: {rules: [power_outage]}, target: {kinds: [water]}, equal: [compound_id]}",
     "names the `rules`"),
    ("- {name: x, source: {rules: [power_outage]}, target: {rules: [power_outage]}, equal: [compound_id]}",
     "cannot mute itself"),
    ("- {name: x, source: [power_outage], target: {rules: [camera_offline]}, equal: [compound_id]}",
     "a matcher is a mapping"),
    ("- {name: x, source: {rules: [power_outage]}, target: {rules: [camera_offline]}}", "missing ['equal']"),
    ("- {name: x, sorce: {rules: [power_outage]}, source: {rules: [power_outage]},"
     " target: {rules: [camera_offline]}, equal: [compound_id]}", "unknown keys ['sorce']"),
])
def test_a_bad_inhibit_rule_is_refused_naming_it(tmp_path: Path, entry: str, says: str) -> None:
    text = BUNDLED_RULES.read_text(encoding="utf-8")
    head = text[:text.index("inhibit_rules:")]
    p = tmp_path / "rules.yaml"
    p.write_text(f"{head}inhibit_rules:\n  {entry}\n", encoding="utf-8")
    line = head.count("\n") + 2
    with pytest.raises(RuleError) as err:
        load_ruleset(p)
    assert f"{p}:{line}: inhibit rule 1 (x)" in str(err.value) and says in str(err.value)


def test_the_running_service_keeps_it_muted_across_a_restart(settings: Settings, tmp_path: Path,
                                                             collector: Callable[[str], Collector]) -> None:
    """The real alert service, the real broker and store: a muted alert is not on `sc/alerts`, stays muted
    through a restart of the service, and is published and notified once its cause closes. (A rules file
    whose source is a per-reading rule of the same compound, so no scan has to settle first.)"""
    text = BUNDLED_RULES.read_text(encoding="utf-8")
    head = text[:text.index("inhibit_rules:")].replace(
        "overrides: []", "overrides:\n  - {rule: water_pressure_low, compound: YL-01, for_s: 0}")
    rules = tmp_path / "rules.yaml"
    rules.write_text(head + "inhibit_rules:\n  - {name: test, source: {rules: [power_leakage_high]},"
                     " target: {rules: [water_pressure_low]}, equal: [compound_id]}\n", encoding="utf-8")
    s = replace(settings, alerts_rules_file=str(rules), alerts_fold_window_s=0.0)
    reg = load_registry(ensure_registry(s))
    power = next(d for d in sorted(reg.values(), key=lambda d: d.device_id) if d.compound_id == "YL-01"
                 and d.kind == "power")
    water = next(d for d in sorted(reg.values(), key=lambda d: d.device_id) if d.compound_id == "YL-01"
                 and d.kind == "water")
    sub = collector(f"{ALERT_TOPIC_ROOT}/{water.community}/+")

    def on_broker(rule: str) -> list[dict[str, Any]]:
        return [orjson.loads(p) for _, p, _ in sub.messages if p and orjson.loads(p)["rule"] == rule]

    with RunningAlerts(s) as svc:
        feed(svc, power, {"leakage_ma": 350.0})
        assert sub.wait_for(lambda _: bool(on_broker("power_leakage_high")))
        feed(svc, water, {"pressure_mpa": 0.12})
        muted = wait_until(lambda: next((a for a in svc.store.list(limit=100) if a.rule == "water_pressure_low"),
                                        None))
        assert muted is not None and inhibit.marked(muted.message)
    store = open_store(s)
    try:
        assert store.timeline(muted.alert_id)[-1].event == Step.INHIBITED
    finally:
        store.close()
    with RunningAlerts(s) as svc:  # a restart: still muted, and its retained copy is not put back
        assert wait_until(lambda: svc.engine.inhibited.get(muted.alert_id))
        feed(svc, water, {"pressure_mpa": 0.12})
        assert not on_broker("water_pressure_low")
        feed(svc, power, {"leakage_ma": 10.0})  # the cause clears; resolved after the hold-off (2 s)
        assert sub.wait_for(lambda _: bool(on_broker("water_pressure_low")), timeout=20)
        (back,) = on_broker("water_pressure_low")
        assert back["alert_id"] == muted.alert_id and back["state"] == "active" and not inhibit.marked(back["message"])
        assert wait_until(lambda: muted.alert_id.encode() in outbox_path(s.data_path).read_bytes())
        steps = [st.event for st in svc.store.timeline(muted.alert_id)]
        # muted once: the restarted service carried the muting on (it did not find and mute it anew)
        assert steps.count(Step.INHIBITED) == 1 and steps[-1] == Step.UNINHIBITED
