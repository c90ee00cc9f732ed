"""The 6·13 guard on the engine side: no hand close while the danger is measured, the watch after a
close reopening the same incident (and telling everyone told before, dispatched teams included),
a new alert once the watch has run out, and life-safety shelves needing a second person."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.archive import archive
from alerts.delivery import Outbox, outbox_for
from alerts.dispatch import ACTIONS, CAUSES, DispatchBook, Refused
from alerts.engine import Engine
from alerts.guard import Policy, danger
from alerts.guard import resolve as guard_resolve
from alerts.notify import Escalation, Notifier, load_roster
from alerts.rules import load_rules
from alerts.shelving import ShelfError, shelve
from alerts.store import open_store
from alerts.teams import load_teams
from core.contract import MANHOLE, Alert, Device
from core.timebase import iso
from core.validation import Telemetry
from tests.conftest import make_settings

GAS = Device("G-1", "gas", "yanhu", "YH-01", 10, 110.79, 32.65)
POWER = Device("P-1", "power", "yanhu", "YH-01", 15, 110.79, 32.65)
GAS_WATCH_S = 1800  # alerts/rules.yaml: gas_lel_high watch_s


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    def __init__(self, tmp_path: Path, store_url: str | None = None) -> None:
        self.clock = Clock()
        self.settings = make_settings(tmp_path / "var", store_url=store_url)
        self.store = open_store(self.settings)
        self.published: list[Alert] = []
        self.outbox = outbox_for(self.settings)  # the file, or the store's table on PostgreSQL
        self.book = DispatchBook(self.store, self.settings)
        self.engine = Engine(load_rules(), self.store, self.published.append, holdoff_s=60, update_min_s=0,
                             clock=self.clock, escalation=Escalation(load_roster(), Notifier(self.outbox)),
                             watch_s=600, on_reopen=lambda a: self.book.reopened(a, self.clock.t))
        self.policy = Policy(60, 600)

    def gas(self, lel: float) -> None:
        self.engine.handle(Telemetry(GAS, int(self.clock.t * 1000), None, {"lel_pct": lel}))

    def notes(self) -> list[dict]:  # type: ignore[type-arg]
        if isinstance(self.outbox, Outbox) and not self.outbox.path.exists():
            return []
        return [e for _, e in self.outbox.read(0) if e is not None]


@pytest.fixture
def rig(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    """On each backend: the SQLite file, then PostgreSQL."""
    r = Rig(tmp_path, store_url)
    yield r
    r.store.close()


def test_hand_close_refused_while_the_reading_is_in_alarm(rig: Rig) -> None:
    rig.gas(62.0)
    aid = rig.published[-1].alert_id
    # No tick yet: the raise itself wrote the reading that opened it, so no close slips in before.
    assert guard_resolve(rig.store, rig.policy, aid, "值班员张", None, now=rig.clock.t).status == 409
    rig.clock.t += 5
    rig.gas(62.0)
    rig.engine.tick()  # the condition with its latest reading is in the store
    live = danger(rig.store, rig.store.get(aid), rig.policy, rig.clock.t)  # type: ignore[arg-type]
    assert live is not None and live.holds and live.value == 62.0 and live.at == iso(rig.clock.t)

    out = guard_resolve(rig.store, rig.policy, aid, "值班员张", "已处置", now=rig.clock.t)
    assert out.status == 409 and out.live is not None and out.body()["value"] == 62.0
    assert "62.0 %LEL" in out.body()["error"]
    assert rig.store.get(aid).state == "active"  # type: ignore[union-attr]
    assert [st.event for st in rig.store.timeline(aid)] == ["raised"]  # nothing changed

    # An override needs a reason.
    out = guard_resolve(rig.store, rig.policy, aid, "值班员张", "  ", override=True, now=rig.clock.t)
    assert out.status == 400 and rig.store.get(aid).state == "active"  # type: ignore[union-attr]


def test_hand_close_refused_until_the_holdoff_has_run_then_allowed(rig: Rig) -> None:
    rig.gas(30.0)
    aid = rig.published[-1].alert_id
    rig.clock.t += 2
    rig.gas(5.0)  # clear: the hold-off (60 s) starts
    rig.engine.tick()
    rig.clock.t += 30
    out = guard_resolve(rig.store, rig.policy, aid, "值班员张", None, now=rig.clock.t)
    assert out.status == 409 and out.live is not None and not out.live.holds and out.live.value == 5.0
    rig.clock.t += 31  # the hold-off has run since the last reading in alarm
    out = guard_resolve(rig.store, rig.policy, aid, "值班员张", "复测 0 %LEL", now=rig.clock.t)
    assert out.status == 200 and out.alert is not None and out.alert.resolved_by == "值班员张"


def test_override_then_re_rise_reopens_the_same_alert_and_tells_everyone_again(rig: Rig) -> None:
    rig.gas(62.0)
    aid = rig.published[-1].alert_id
    rig.clock.t += 130  # red escalates after 120 s unacknowledged: tier 2 told too
    rig.engine.tick()
    assert rig.store.get(aid).escalation_tier == 2  # type: ignore[union-attr]
    team = load_teams().get("gas")
    assert team is not None
    d = rig.book.create(aid, team, None, iso(rig.clock.t + 1800), "值班员张", None, rig.clock.t)
    rig.book.accept(d.dispatch_id, rig.clock.t + 1)
    rig.book.arrive(d.dispatch_id, rig.clock.t + 2)
    rig.book.feedback(d.dispatch_id, CAUSES[0], ACTIONS[0], "处置完毕", [], rig.clock.t + 3, remeasure="8",
                     reason="关阀后复测 8 %LEL")
    before = len(rig.notes())

    out = guard_resolve(rig.store, rig.policy, aid, "值班员张", "阀门已关, 复测中", override=True, now=rig.clock.t)
    assert out.status == 200
    step = rig.store.timeline(aid)[-1]
    assert step.event == "resolved" and step.actor == "值班员张" and step.note == "阀门已关, 复测中"
    assert step.data["override"] is True and step.data["value"] == 62.0 and step.data["reason"] == "阀门已关, 复测中"

    rig.engine.adopt(out.alert)  # as the command handler does: the engine holds the hand close at once
    rig.clock.t += 1
    rig.gas(62.0)  # still leaking: the same incident, reopened
    again = rig.published[-1]
    assert again.alert_id == aid and again.state == "active" and again.reopened == 1
    assert again.escalation_tier == 3 and "复燃" in again.message
    assert [a.alert_id for a in rig.store.list(device_id="G-1")] == [aid]  # no new alert
    reopened = [st for st in rig.store.timeline(aid) if st.event == "reopened"]
    assert len(reopened) == 1 and reopened[0].data["value"] == 62.0 and reopened[0].data["closed_by"] == "值班员张"

    new = rig.notes()[before:]
    staff = [n for n in new if n["event"] == "reopened"]
    told_first = {p["name"] for n in rig.notes()[:before] if n["event"] in ("raised", "escalated") for p in n["to"]}
    assert len(staff) == 1 and told_first <= {p["name"] for p in staff[0]["to"]}
    fitters = [n for n in new if n["event"] == "dispatch_reopened"]
    assert len(fitters) == 1 and fitters[0]["dispatch_id"] == d.dispatch_id
    assert {p["name"] for p in fitters[0]["to"]} == {c["name"] for c in d.contacts}
    assert rig.book.get(d.dispatch_id).state == "accepted"  # type: ignore[union-attr]  # back to the field


def test_a_close_by_itself_is_watched_too_and_after_the_watch_a_new_alert(rig: Rig) -> None:
    rig.gas(30.0)
    aid = rig.published[-1].alert_id
    rig.clock.t += 1
    rig.gas(2.0)
    rig.clock.t += 61
    rig.engine.tick()
    assert rig.store.get(aid).state == "resolved"  # type: ignore[union-attr]
    rig.clock.t += GAS_WATCH_S - 100  # inside the gas watch (30 min)
    rig.gas(31.0)
    assert rig.published[-1].alert_id == aid and rig.published[-1].reopened == 1
    rig.clock.t += 1
    rig.gas(1.0)
    rig.clock.t += 61
    rig.engine.tick()
    assert rig.store.get(aid).state == "resolved"  # type: ignore[union-attr]
    rig.clock.t += GAS_WATCH_S + 1  # the watch has run out: a new incident
    rig.gas(31.0)
    assert rig.published[-1].alert_id != aid and rig.published[-1].reopened == 0


def test_archive_refused_while_the_device_is_in_alarm(rig: Rig) -> None:
    rig.gas(62.0)
    aid = rig.published[-1].alert_id
    rig.engine.tick()
    out = guard_resolve(rig.store, rig.policy, aid, "张", "先关阀", override=True, now=rig.clock.t)
    assert out.status == 200
    rig.engine.adopt(out.alert)  # as the command handler does
    rig.engine.save()
    rig.clock.t += 2
    # The engine has not heard a reading since: the store's condition still says 62 %LEL.
    with pytest.raises(Refused) as exc:
        archive(rig.store, aid, "李四", CAUSES[0], None, iso(rig.clock.t), policy=rig.policy)
    assert exc.value.status == 409 and exc.value.body is not None and exc.value.body["value"] == 62.0
    done = archive(rig.store, aid, "李四", CAUSES[0], "现场复测 0", iso(rig.clock.t), policy=rig.policy,
                   override=True)
    assert done.archived_by == "李四"
    assert rig.store.timeline(aid)[-1].data["override"] is True


def test_power_alarm_is_not_life_safety_but_a_red_re_raise_under_a_shelf_is_notified(rig: Rig) -> None:
    # A power device may be shelved by one person; a gas rule or device may not.
    assert shelve(rig.store, "device", "P-1", 600, "检修", "张三", now=rig.clock.t)["life_safety"] == 0
    for scope, target in (("rule", "gas_lel_high"), ("rule", "gas_lel_warn"), ("rule", "fire_risk")):
        with pytest.raises(ShelfError, match=r"second person|另一名"):
            shelve(rig.store, scope, target, 600, "检修", "张三", rules=load_rules(), now=rig.clock.t)
    with pytest.raises(ShelfError, match="燃气探测器"):
        shelve(rig.store, "device", "G-1", 600, "检修", "张三", device_kind={"G-1": "gas"}.get, now=rig.clock.t)

    roles = {"lisi": "operator", "viewer1": "viewer"}.get
    with pytest.raises(ShelfError, match="second person"):
        shelve(rig.store, "rule", "gas_lel_high", 600, "检修", "lisi", rules=load_rules(), approved_by="lisi",
               approver_role=roles, now=rig.clock.t)
    for nobody in ("viewer1", "ghost"):
        with pytest.raises(ShelfError, match="operator or admin"):
            shelve(rig.store, "rule", "gas_lel_high", 600, "检修", "张三", rules=load_rules(), approved_by=nobody,
                   approver_role=roles, now=rig.clock.t)
    shelf = shelve(rig.store, "compound", "YH-01", 3600, "燃气公司抢修", "张三", rules=load_rules(),
                   approved_by="lisi", approver_role=roles, now=rig.clock.t)
    assert shelf["approved_by"] == "lisi"

    # A compound with an open red gas alert is life-safety: refused without the second person.
    rig.engine.tick()
    rig.gas(62.0)  # red under the (approved) shelf: published and notified all the same
    aid = rig.published[-1].alert_id
    assert any(n["event"] == "raised" and n["alert_id"] == aid for n in rig.notes())
    assert any(st.event == "shelved" and st.data.get("notified") for st in rig.store.timeline(aid))
    with pytest.raises(ShelfError, match=aid):
        shelve(rig.store, "compound", "YH-01", 600, "检修", "张三", now=rig.clock.t)


def test_the_watch_survives_a_restart_of_the_engine(rig: Rig) -> None:
    rig.gas(62.0)
    aid = rig.published[-1].alert_id
    assert guard_resolve(rig.store, rig.policy, aid, "张", "关阀", override=True, now=rig.clock.t).status == 200
    # The engine dies before it even saw the close (as kill -9); a new one on the same store.
    again: list[Alert] = []
    engine = Engine(load_rules(), rig.store, again.append, holdoff_s=60, update_min_s=0, clock=rig.clock)
    rig.clock.t += 600
    engine.handle(Telemetry(GAS, int(rig.clock.t * 1000), None, {"lel_pct": 40.0}))
    assert again[-1].alert_id == aid and again[-1].reopened == 1 and again[-1].state == "active"


def test_a_power_alarm_is_guarded_too_but_a_camera_tamper_closes_by_hand(rig: Rig) -> None:
    from core.validation import Event

    rig.engine.handle(Telemetry(POWER, int(rig.clock.t * 1000), None, {"leakage_ma": 420.0}))
    hot = rig.published[-1].alert_id
    out = guard_resolve(rig.store, rig.policy, hot, "张", None, now=rig.clock.t)
    assert out.status == 409 and out.live is not None and "420" in out.live.words()
    cam = Device("C-1", "camera", "yanhu", "YH-01", 30, 110.79, 32.65)
    rig.engine.handle(Event(cam, int(rig.clock.t * 1000), "tamper", "镜头被遮挡"))
    tamper = rig.published[-1].alert_id
    assert guard_resolve(rig.store, rig.policy, tamper, "张", "已到场查看", now=rig.clock.t).status == 200


def test_a_manhole_leak_is_guarded_while_the_well_still_holds_gas(rig: Rig) -> None:
    well = Device("G-2", "gas", "yanhu", "YH-01", 10, 110.79, 32.65, {"install": MANHOLE})
    for i in range(60):  # a swinging leak: 4 / 16 %LEL
        rig.engine.handle(Telemetry(well, int(rig.clock.t * 1000), None, {"lel_pct": 16.0 if i % 2 else 4.0}))
        rig.clock.t += 10
    leak = [a for a in rig.published if a.rule == "manhole_gas_leak"]
    assert leak, "the leak was not raised"
    for _ in range(12):  # steady but still 8 %LEL: the condition holds, the reading is the window's mean
        rig.engine.handle(Telemetry(well, int(rig.clock.t * 1000), None, {"lel_pct": 8.0}))
        rig.clock.t += 10
    rig.engine.tick()
    out = guard_resolve(rig.store, rig.policy, leak[0].alert_id, "值班员张", "已处置", now=rig.clock.t)
    assert out.status == 409 and out.live is not None and out.live.holds
