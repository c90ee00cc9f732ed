"""Staff sign-in for the pages: required with SC_API_TOKEN or accounts, never for /api/health."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dashboard.accounts import Accounts, accounts_path
from dashboard.app import create_app
from smartcommunity.cli import main
from tests.conftest import make_settings


def client_for(tmp_path: Path, **over: object):  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9",
                             **over)
    return settings, create_app(settings).server.test_client()


def test_open_when_no_token_and_no_accounts(tmp_path: Path) -> None:
    _, c = client_for(tmp_path)
    assert c.get("/").status_code == 200


def test_token_requires_sign_in_for_pages_and_callbacks(tmp_path: Path) -> None:
    settings, c = client_for(tmp_path, api_token="s3cret")
    r = c.get("/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    assert c.post("/_dash-update-component", json={}).status_code == 401
    assert "尚无账号" in c.get("/login").get_data(as_text=True)
    # /api/health stays open; /api needs the bearer token, not a page session.
    assert c.get("/api/health").status_code in (200, 503)
    assert c.get("/api/alerts").status_code == 401

    Accounts(accounts_path(settings.data_path)).add("zhang", "张三", "correct horse")
    assert c.post("/login", data={"username": "zhang", "password": "wrong pass"}).status_code == 401
    r = c.post("/login", data={"username": "zhang", "password": "correct horse", "next": "//evil.example/"})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert c.get("/").status_code == 200
    c.get("/logout")
    assert c.get("/").status_code == 302


def test_accounts_alone_require_sign_in(tmp_path: Path) -> None:
    settings, c = client_for(tmp_path)
    Accounts(accounts_path(settings.data_path)).add("li", "李四", "abcdefgh")
    assert c.get("/wall").status_code == 302


def test_users_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough pw\n"))
    assert main(["users", "add", "wang", "--name", "王五"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "zhao"]) == 2
    assert main(["users", "list"]) == 0
    assert "wang\t王五" in capsys.readouterr().out
    acc = Accounts(accounts_path(tmp_path / "var"))
    assert acc.verify("wang", "long enough pw") == "王五" and acc.verify("wang", "nope") is None
    assert main(["users", "remove", "wang"]) == 0 and not acc.any()
