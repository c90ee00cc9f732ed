"""An account's scope (core/staff.py): kept in the account file beside its role, checked words only,
an older file without scopes sees everything, an unreadable scope sees nothing; and the CLI round trip
`users scope NAME --community/--kind/--all` with `users list` showing it."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from core.contract import COMMUNITIES, KINDS
from core.staff import Accounts, Scope, accounts_path
from dashboard.audit import audit_path
from smartcommunity.cli import main


def test_scope_judges_communities_and_kinds() -> None:
    grid = Scope.of(["yanling"])
    gas = Scope.of(kinds=["gas"])
    both = Scope.of(["yanling", "yanhu"], ["gas", "water"])
    assert Scope().everything and Scope().allows("yanhu", "power") and Scope().allows("yanhu", None)
    assert grid.allows("yanling", "power") and not grid.allows("yanhu", "gas")
    assert gas.allows("yanhu", "gas") and not gas.allows("yanhu", "water")
    assert not gas.allows("yanhu", None)  # an alert of no kind (a place) is not a gas company's
    assert both.allows("yanhu", "water") and not both.allows("lanshanjun", "water")
    assert not both.allows("yanhu", "power")
    assert both.describe() == "community=yanhu,yanling kind=gas,water" and Scope().describe() == "all"
    assert grid.key != gas.key and Scope.from_json(both.as_json()) == both
    for bad in ({"communities": ["nowhere"]}, {"kinds": ["oil"]}):
        with pytest.raises(ValueError):
            Scope.of(bad.get("communities", ()), bad.get("kinds", ()))


def test_scope_kept_with_the_account(tmp_path: Path) -> None:
    acc = Accounts(accounts_path(tmp_path))
    acc.add("wang", "王五", "long enough pw")
    assert acc.get("wang").scope == Scope()  # type: ignore[union-attr]
    assert acc.set_scope("wang", Scope.of(["lanshanjun"], ["gas"]))
    assert not acc.set_scope("nobody", Scope.of(["lanshanjun"]))
    assert acc.get("wang").scope == Scope.of(["lanshanjun"], ["gas"])  # type: ignore[union-attr]
    acc.add("wang", "", "a new password!")  # a new password keeps the scope and the role
    got = acc.get("wang")
    assert got is not None and got.scope == Scope.of(["lanshanjun"], ["gas"]) and got.role == "operator"
    assert acc.set_scope("wang", Scope())
    assert "scope" not in orjson.loads(accounts_path(tmp_path).read_bytes())["wang"]
    # A file written before scopes: everyone sees everything. A scope the code cannot read: nothing.
    doc = orjson.loads(accounts_path(tmp_path).read_bytes())
    doc["odd"] = {**doc["wang"], "scope": ["yanling"]}
    accounts_path(tmp_path).write_bytes(orjson.dumps(doc))
    odd = acc.get("odd")
    assert odd is not None and not any(odd.scope.allows(c, k) for c in COMMUNITIES for k in KINDS)


def test_users_scope_cli_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    monkeypatch.setenv("SC_DATA_DIR", str(data))
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough pw\n"))
    assert main(["users", "add", "gasco", "--name", "燃气公司"]) == 0
    assert main(["users", "scope", "gasco", "--kind", "gas"]) == 0
    assert main(["users", "scope", "grid", "--community", "yanling"]) == 2  # no such account
    assert main(["users", "scope", "gasco", "--kind", "oil"]) == 2
    assert main(["users", "scope", "gasco", "--all", "--kind", "gas"]) == 2
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    assert "gasco\t燃气公司\toperator\tkind=gas" in capsys.readouterr().out
    assert main(["users", "scope", "gasco", "--community", "yanling", "yanhu", "--kind", "gas", "--kind", "water"]) == 0
    assert Accounts(accounts_path(data)).get("gasco").scope == Scope.of(  # type: ignore[union-attr]
        ["yanling", "yanhu"], ["gas", "water"])
    capsys.readouterr()
    assert main(["users", "scope", "gasco"]) == 0
    assert capsys.readouterr().out.strip() == "gasco\tcommunity=yanhu,yanling kind=gas,water"
    assert main(["users", "scope", "gasco", "--all"]) == 0
    capsys.readouterr()
    assert main(["users", "list"]) == 0
    assert "gasco\t燃气公司\toperator\tall" in capsys.readouterr().out
    logged = [orjson.loads(x) for x in audit_path(data).read_bytes().splitlines()]
    assert [e["detail"]["new_scope"] for e in logged if e["action"] == "account.scope"] == [
        "kind=gas", "community=yanhu,yanling kind=gas,water", "all"]
