"""The `dashboard` verb: registered with its options, serving the app it builds."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

import dashboard.cli as dash_cli
from core.staff import Accounts, accounts_path
from dashboard.audit import audit_path
from tests.conftest import make_settings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    dash_cli.register(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_defaults_and_options() -> None:
    args = parse(["dashboard"])
    assert args.host == "127.0.0.1" and args.port is None and args.func is dash_cli.run
    args = parse(["dashboard", "--host", "0.0.0.0", "--port", "8123"])
    assert (args.host, args.port) == ("0.0.0.0", 8123)


def test_run_serves_on_the_configured_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(app: Any, host: str, port: int) -> None:
        seen.update(host=host, port=port, status=app.server.test_client().get("/").status_code)

    monkeypatch.setattr(dash_cli, "serve", fake_serve)
    s = make_settings(tmp_path / "var", http_port=8765, mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    assert dash_cli.run(parse(["dashboard"]), s) == 0
    assert seen == {"host": "127.0.0.1", "port": 8765, "status": 200}


def test_an_account_stands_for_a_roster_person(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    s = make_settings(tmp_path / "var")
    monkeypatch.setattr("sys.stdin", io.StringIO("password-1\n"))
    args = parse(["users", "add", "xiaoli", "--name", "岩岭值班员小李", "--person", "yl_duty"])
    assert args.func(args, s) == 0
    accounts = Accounts(accounts_path(s.data_path))
    assert accounts.get("xiaoli").person == "yl_duty"  # type: ignore[union-attr]
    monkeypatch.setattr("sys.stdin", io.StringIO("password-2\n"))
    args = parse(["users", "add", "xiaoli"])  # a new password keeps the link
    assert args.func(args, s) == 0 and accounts.get("xiaoli").person == "yl_duty"  # type: ignore[union-attr]
    args = parse(["users", "add", "wang", "--person", "nobody"])
    assert args.func(args, s) == 2 and "no person 'nobody'" in capsys.readouterr().err
    assert accounts.get("wang") is None
    args = parse(["users", "person", "xiaoli", "center"])
    assert args.func(args, s) == 0 and accounts.get("xiaoli").person == "center"  # type: ignore[union-attr]
    args = parse(["users", "person", "xiaoli", "--none"])
    assert args.func(args, s) == 0 and accounts.get("xiaoli").person is None  # type: ignore[union-attr]
    args = parse(["users", "person", "nobody", "center"])
    assert args.func(args, s) == 2  # no such account
    lines = [orjson.loads(x) for x in audit_path(s.data_path).read_bytes().splitlines()]
    assert [x["detail"].get("person") for x in lines if x["action"] == "account.person"] == ["center", None]
