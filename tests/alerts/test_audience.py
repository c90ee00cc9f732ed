"""Whom an alert may reach: a roster person standing for an account scoped to gas is told of a gas alert
of their community, not of a power alert there; others on the same tier are told of both; a person with
no account, or whose account has no scope, is not limited."""

from __future__ import annotations

from pathlib import Path

from alerts.audience import ScopeBook, in_scope
from alerts.engine import Engine
from alerts.notify import Escalation, Notifier
from alerts.rules import load_ruleset
from alerts.store import open_store
from core.contract import Alert, Device
from core.staff import Accounts, Scope, accounts_path
from tests.alerts.test_engine import GAS, POWER, Clock, tel
from tests.alerts.test_preferences import PEOPLE, ROSTER, sent

DUTY = PEOPLE["yl_duty"]  # tier 1 of yanling


def test_a_person_of_a_scoped_account_hears_only_of_their_scope(tmp_path: Path) -> None:
    accounts = Accounts(accounts_path(tmp_path))
    accounts.add("gasco", "燃气公司", "a long enough password", role="operator", person="yl_duty")
    accounts.set_scope("gasco", Scope.of(kinds=["gas"]))
    book = ScopeBook(lambda: accounts)
    clock = Clock()
    store = open_store(str(tmp_path / "a.sqlite"))
    outbox = tmp_path / "outbox.jsonl"
    esc = Escalation(ROSTER, Notifier(outbox), clock=clock, scopes=book.current)
    engine = Engine(load_ruleset(), store, lambda _a: None, 60, 0, clock=clock, escalation=esc)

    engine.handle(tel(POWER, clock, leakage_ma=400.0))  # 剩余电流超限 in yanling: not gas
    engine.handle(tel(GAS, clock, lel_pct=60.0))
    told = {store.get(aid).kind: names for aid, event, names, _ in sent(outbox) if event == "raised"}  # type: ignore[union-attr]
    assert DUTY.name in told["gas"]
    assert DUTY.name not in told["power"]
    others = [p.name for p in ROSTER.contacts("yanling", 1) if p.pid != DUTY.pid]
    assert sorted(told["power"]) == sorted(others)  # the rest of the tier is told as ever


def test_no_scope_or_no_account_is_not_limited(tmp_path: Path) -> None:
    accounts = Accounts(accounts_path(tmp_path))
    accounts.add("duty", "值班员", "a long enough password", role="operator", person="yl_duty")
    accounts.add("grid", "网格员", "a long enough password", role="operator", person="yl_duty")
    accounts.set_scope("grid", Scope.of(["yanhu"]))
    scopes = ScopeBook(lambda: accounts).current()
    assert scopes == {}  # one of yl_duty's accounts sees everything: so are they told
    accounts.remove("duty")
    scopes = ScopeBook(lambda: accounts).current()
    assert set(scopes) == {"yl_duty"}
    gas_here = store_alert(GAS)
    assert in_scope([DUTY], gas_here, scopes) == []  # yanling is not their community
    assert in_scope([PEOPLE["center"]], gas_here, scopes) == [PEOPLE["center"]]  # no account: as the roster says


def store_alert(dev: Device) -> Alert:
    return Alert(alert_id="a-1", rule="gas_lel_high", severity="red", state="active", community=dev.community,
                 compound_id=dev.compound_id, device_id=dev.device_id, kind=dev.kind, metric="lel_pct", value=60.0,
                 threshold=25.0, lon=None, lat=None, started_at="2026-12-04T00:00:00Z",
                 updated_at="2026-12-04T00:00:00Z", message="")
