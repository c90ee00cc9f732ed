"""Notification preferences: quiet hours past midnight in Beijing time whatever the host's zone, red
always through on every channel, below red not sent to a quiet person while the escalation goes on,
the chosen channels only, and preferences set through the alerts service's command path kept across
a restart (with who set them and when)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from alerts.command import Command
from alerts.command.client import send
from alerts.engine import Engine
from alerts.notify import Escalation, Notifier
from alerts.preferences import PreferenceBook, PreferenceError, Preferences, checked, quiet_text, reach
from alerts.roster import load_roster
from alerts.rules import load_ruleset
from alerts.store import open_store
from alerts.timeline import Event
from core.severity import Severity
from core.timebase import TZ_NAME, iso
from tests.alerts.test_engine import GAS, Clock, tel
from tests.alerts.test_windows import at, host_zone  # noqa: F401 (fixture)
from tests.conftest import RunningAlerts, make_settings

ROSTER = load_roster()
PEOPLE = {p.pid: p for p in ROSTER.people()}
DUTY = PEOPLE["yl_duty"]  # tier 1 of yanling: phone, wecom, dingtalk
CENTER = PEOPLE["center"]  # tier 2
NIGHT = Preferences("yl_duty", frozenset({"wecom"}), "22:00-07:00")


@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York", TZ_NAME], indirect=True)
def test_quiet_hours_run_past_midnight_in_beijing_time(host_zone: None) -> None:  # noqa: F811
    assert NIGHT.is_quiet(at(0, 22)) and NIGHT.is_quiet(at(0, 23, 30)) and NIGHT.is_quiet(at(1, 6, 59))
    assert not NIGHT.is_quiet(at(0, 21, 59)) and not NIGHT.is_quiet(at(1, 7)) and not NIGHT.is_quiet(at(1, 12))
    assert NIGHT.quiet_ends(at(0, 23)) == at(1, 7) and NIGHT.quiet_ends(at(1, 3)) == at(1, 7)
    assert NIGHT.quiet_ends(at(1, 12)) is None
    day = Preferences("yl_duty", frozenset({"phone"}), "12:00-13:30")  # a nap: the same day
    assert day.is_quiet(at(2, 12, 10)) and not day.is_quiet(at(2, 13, 30)) and not day.is_quiet(at(2, 0, 30))


def test_red_always_through_on_every_channel_below_red_not_to_the_quiet() -> None:
    prefs = {"yl_duty": NIGHT}
    told, quiet = reach([DUTY, CENTER], Severity.RED, at(0, 23), prefs)
    assert told == [DUTY, CENTER] and quiet == []  # every channel the roster has, quiet or not
    assert (told[0].phone, told[0].wecom, told[0].dingtalk) == (DUTY.phone, DUTY.wecom, DUTY.dingtalk)
    told, quiet = reach([DUTY, CENTER], Severity.YELLOW, at(0, 23), prefs)
    assert told == [CENTER] and quiet == [DUTY]
    told, quiet = reach([DUTY], Severity.ORANGE, at(1, 9), prefs)  # awake: only the channel chosen
    assert quiet == [] and (told[0].wecom, told[0].phone, told[0].dingtalk) == (DUTY.wecom, None, None)
    # The last tier all quiet: told all the same, nobody above to escalate to.
    assert reach([DUTY], Severity.YELLOW, at(0, 23), prefs, last_tier=True) == ([DUTY], [])
    # A channel the roster no longer has for them: reached as the roster says, not by none.
    gone = Preferences("yl_duty", frozenset({"email"}), None)
    assert reach([DUTY], Severity.BLUE, at(1, 9), {"yl_duty": gone}) == ([DUTY], [])


def test_preferences_refused_without_a_channel_or_with_one_not_theirs() -> None:
    with pytest.raises(PreferenceError, match="至少保留一个"):
        checked(DUTY, [], None)
    with pytest.raises(PreferenceError, match="email"):
        checked(DUTY, ["wecom", "email"], None)
    assert checked(DUTY, ["dingtalk", "phone", "phone"], " 23:00-6:30") == (["phone", "dingtalk"], "23:00-06:30")
    assert quiet_text("", "") is None and quiet_text("22：00", "07:00") == "22:00-07:00"
    for a, b in (("22:00", ""), ("25:00", "07:00"), ("07:00", "07:00"), ("晚上", "早上")):
        with pytest.raises(PreferenceError):
            quiet_text(a, b)


def rig(tmp_path: Path) -> tuple[Engine, Clock, PreferenceBook, Path]:
    clock = Clock()
    store = open_store(str(tmp_path / "a.sqlite"))
    outbox = tmp_path / "outbox.jsonl"
    book = PreferenceBook(store)

    def record(alert_id: str, event: str, data: dict) -> None:  # type: ignore[type-arg]
        store.record(alert_id, event, iso(clock.t), data=data)

    esc = Escalation(ROSTER, Notifier(outbox, record=record), preferences=book.current, clock=clock)
    return Engine(load_ruleset(), store, lambda _a: None, 60, 0, clock=clock, escalation=esc), clock, book, outbox


def sent(outbox: Path) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """(alert_id, event, names told, the first one's channels) of each notification."""
    out = []
    for line in outbox.read_bytes().splitlines() if outbox.exists() else []:
        e = orjson.loads(line)
        first = {k: v for k, v in (e["to"][0] if e["to"] else {}).items() if k in ("phone", "wecom", "dingtalk")}
        out.append((e["alert_id"], e["event"], [p["name"] for p in e["to"]], first))
    return out


def test_engine_quiet_person_not_told_of_yellow_but_escalated_red_always(tmp_path: Path) -> None:
    engine, clock, book, outbox = rig(tmp_path)
    book.set(DUTY, ["wecom"], "22:00-07:00", "yl_duty 的账号", "2026-12-07T21:00:00+08:00")
    store = book.store
    clock.t = at(0, 23)  # Monday 23:00 Beijing: yl_duty is quiet
    engine.handle(tel(GAS, clock, lel_pct=15.0))
    clock.t += 31
    engine.handle(tel(GAS, clock, lel_pct=15.0))  # 燃气浓度持续偏高: yellow
    yellow = [a for a in store.list() if a.rule == "gas_lel_warn"]
    assert len(yellow) == 1 and yellow[0].severity == Severity.YELLOW
    aid = yellow[0].alert_id
    assert sent(outbox) == [(aid, "raised", [], {})]  # the group robot may post it; nobody is @-ed / texted
    quiet = [s for s in store.timeline(aid) if s.event == Event.QUIET]
    assert len(quiet) == 1 and quiet[0].data == {"event": "raised", "tier": 1, "people": [DUTY.name],
                                                 "until": iso(at(1, 7))}
    # Nobody acknowledges: the escalation goes on, the next tier (awake) is told on the roster's schedule.
    clock.t += ROSTER.escalate_after_s[Severity.YELLOW] + 1
    engine.handle(tel(GAS, clock, lel_pct=15.0))
    engine.tick()
    assert (aid, "escalated", [CENTER.name], {"phone": CENTER.phone, "wecom": CENTER.wecom}) in sent(outbox)
    # Red in quiet hours: through to the quiet person, on every channel the roster has.
    engine.handle(tel(GAS, clock, lel_pct=60.0))
    red = next(a for a in store.list() if a.severity == Severity.RED)
    told_red = [s for s in sent(outbox) if s[0] == red.alert_id and s[1] in ("raised", "escalated")]
    assert told_red and told_red[0][2][0] == DUTY.name
    assert told_red[0][3] == {"phone": DUTY.phone, "wecom": DUTY.wecom, "dingtalk": DUTY.dingtalk}


def test_awake_person_told_on_the_chosen_channel_only(tmp_path: Path) -> None:
    engine, clock, book, outbox = rig(tmp_path)
    book.set(DUTY, ["wecom"], "22:00-07:00", "值班员", "2026-12-08T08:00:00+08:00")
    clock.t = at(1, 9)  # Tuesday 09:00: awake
    engine.handle(tel(GAS, clock, lel_pct=15.0))
    clock.t += 31
    engine.handle(tel(GAS, clock, lel_pct=15.0))
    [(aid, event, names, channels)] = sent(outbox)
    assert (event, names, channels) == ("raised", [DUTY.name], {"wecom": DUTY.wecom})
    assert not [s for s in book.store.timeline(aid) if s.event == Event.QUIET]


def test_preferences_set_by_command_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9")  # no broker: commands work
    with RunningAlerts(settings, broker=False) as svc:
        cmd = Command("preferences", {"person": "yl_duty", "channels": ["dingtalk", "wecom"], "quiet": "22:30-06:30"},
                      "岩岭值班员小李", "console")
        ok = send(settings, cmd)
        assert ok.status == 200, ok.body
        assert ok.body["preferences"]["channels"] == ["wecom", "dingtalk"] and ok.body["name"] == DUTY.name
        assert svc.preferences.current()["yl_duty"].quiet == "22:30-06:30"  # in force at once
        none = send(settings, Command("preferences", {"person": "yl_duty", "channels": []}, "小李", "console"))
        assert none.status == 400 and "至少保留一个" in none.body["error"]
        nobody = send(settings, Command("preferences", {"person": "nobody", "channels": ["phone"]}, "x", "console"))
        assert nobody.status == 404
    with RunningAlerts(settings, broker=False) as svc:  # a new service over the same store
        p = svc.preferences.current()["yl_duty"]
        assert (sorted(p.channels), p.quiet, p.updated_by) == (["dingtalk", "wecom"], "22:30-06:30", "岩岭值班员小李")
        assert p.updated_at and p.is_quiet(at(0, 23))
        # The command itself is kept too: who, when, what answer.
        assert svc.store.command(cmd.command_id) == (200, ok.body)


def test_preferences_kept_and_replaced_in_either_store(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.preferences() == {}
        store.set_preferences("yl_duty", ["phone", "wecom"], "22:00-07:00", "小李", "2026-12-07T21:00:00+08:00")
        store.set_preferences("center", ["email"], None, "王主任", "2026-12-07T21:05:00+08:00")
        store.set_preferences("yl_duty", ["dingtalk"], None, "管理员", "2026-12-08T08:00:00+08:00")  # replaced
        again = open_store(store_url)  # another process, or the service after a restart
        try:
            assert again.preferences() == {
                "yl_duty": {"person": "yl_duty", "channels": ["dingtalk"], "quiet": None, "updated_by": "管理员",
                            "updated_at": "2026-12-08T08:00:00+08:00"},
                "center": {"person": "center", "channels": ["email"], "quiet": None, "updated_by": "王主任",
                           "updated_at": "2026-12-07T21:05:00+08:00"}}
        finally:
            again.close()
    finally:
        store.close()
