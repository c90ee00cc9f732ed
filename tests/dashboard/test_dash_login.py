"""Staff sign-in for the pages: required with SC_API_TOKEN or accounts, never for /api/health;
roles, scrypt hashes, the users CLI and the display link. (The attacks themselves, over real HTTP
against a running dashboard, are in tests/security/web/test_web_security.py.)"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from pathlib import Path

import orjson
import pytest

from core.staff import Accounts, accounts_path
from dashboard.app import create_app
from dashboard.audit import audit_path, verify
from dashboard.login import safe_next
from dashboard.sessions import SessionStore, sessions_path
from smartcommunity.cli import main
from tests.conftest import make_settings


def client_for(tmp_path: Path, **over: object):  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9",
                             **over)
    return settings, create_app(settings).server.test_client()


def sign_in(c, username: str, password: str, nxt: str = "/"):  # type: ignore[no-untyped-def]
    form = c.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    return c.post("/login", data={"username": username, "password": password, "next": nxt, "csrf": csrf})


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
    assert sign_in(c, "zhang", "wrong pass").status_code == 401
    r = sign_in(c, "zhang", "correct horse", nxt="//evil.example/")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert c.get("/").status_code == 200
    logout = c.get("/logout").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', logout).group(1)  # type: ignore[union-attr]
    assert c.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert c.get("/").status_code == 200  # a forged sign-out did nothing
    assert c.post("/logout", data={"csrf": csrf}).status_code == 302
    assert c.get("/").status_code == 302


def test_login_form_needs_its_csrf_token(tmp_path: Path) -> None:
    settings, c = client_for(tmp_path)
    Accounts(accounts_path(settings.data_path)).add("zhang", "张三", "correct horse")
    r = c.post("/login", data={"username": "zhang", "password": "correct horse", "next": "/"})
    assert r.status_code == 400 and "sc_session" not in r.headers.get("Set-Cookie", "")
    assert sign_in(c, "zhang", "correct horse").status_code == 302


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("/wall", "/wall"),
        ("/alerts?state=active", "/alerts?state=active"),
        ("//evil.example/", "/"),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("", "/"),
        ("/login?next=//evil", "/"),
    ],
)
def test_safe_next(raw: str, want: str) -> None:
    assert safe_next(raw) == want


def test_accounts_alone_require_sign_in(tmp_path: Path) -> None:
    settings, c = client_for(tmp_path)
    Accounts(accounts_path(settings.data_path)).add("li", "李四", "abcdefgh")
    assert c.get("/wall").status_code == 302


def test_scrypt_and_rehash_of_old_pbkdf2(tmp_path: Path) -> None:
    acc = Accounts(accounts_path(tmp_path))
    acc.add("zhang", "张三", "correct horse")
    doc = orjson.loads(accounts_path(tmp_path).read_bytes())
    assert doc["zhang"]["hash"].startswith("scrypt:32768:8:3$") and doc["zhang"]["role"] == "operator"
    # An account as the previous version wrote it: PBKDF2 at 200,000 rounds, no role.
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", b"old password", salt, 200_000)
    doc["old"] = {"name": "老账号", "hash": f"pbkdf2_sha256$200000${salt.hex()}${digest.hex()}"}
    accounts_path(tmp_path).write_bytes(orjson.dumps(doc))
    assert acc.authenticate("old", "wrong one") is None
    assert orjson.loads(accounts_path(tmp_path).read_bytes())["old"]["hash"].startswith("pbkdf2")
    got = acc.authenticate("old", "old password")
    assert got is not None and got.role == "operator" and got.name == "老账号"
    new = orjson.loads(accounts_path(tmp_path).read_bytes())["old"]["hash"]
    assert new.startswith("scrypt:32768:8:3$")
    assert acc.verify("old", "old password") == "老账号"
    assert stat.S_IMODE(accounts_path(tmp_path).stat().st_mode) == 0o600


def test_users_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    monkeypatch.setenv("SC_DATA_DIR", str(data))
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough pw\n"))
    assert main(["users", "add", "wang", "--name", "王五"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "zhao"]) == 2
    assert main(["users", "list"]) == 0
    assert "wang\t王五\toperator" in capsys.readouterr().out
    assert main(["users", "role", "wang", "viewer"]) == 0
    assert main(["users", "role", "nobody", "admin"]) == 2
    with pytest.raises(SystemExit):
        main(["users", "role", "wang", "superuser"])
    acc = Accounts(accounts_path(data))
    assert acc.get("wang").role == "viewer"  # type: ignore[union-attr]
    assert acc.verify("wang", "long enough pw") == "王五" and acc.verify("wang", "nope") is None
    store = SessionStore(sessions_path(data))
    store.create("wang")
    assert main(["users", "remove", "wang"]) == 0 and not acc.any()
    assert store.count("wang") == 0
    actions = [e["action"] for e in (orjson.loads(x) for x in audit_path(data).read_bytes().splitlines())]
    assert actions == ["account.add", "account.role", "account.remove"]
    assert verify(audit_path(data)) == []
    for f in ("accounts.json", "sessions.sqlite", "audit.jsonl"):
        assert stat.S_IMODE((data / f).stat().st_mode) == 0o600, f


def test_display_link_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    assert main(["users", "display-link", "--base-url", "http://10.1.2.3:8050/"]) == 0
    url = capsys.readouterr().out.strip()
    assert re.fullmatch(r"http://10\.1\.2\.3:8050/display/[A-Za-z0-9_-]{40,}", url)
    assert main(["users", "display-link", "--list"]) == 0
    link_id = capsys.readouterr().out.split("\t")[0]
    assert main(["users", "display-link", "--revoke", "nope"]) == 2
    assert main(["users", "display-link", "--revoke", link_id]) == 0
    assert SessionStore(sessions_path(tmp_path / "var")).link_for(url.rsplit("/", 1)[1]) is None


@pytest.mark.parametrize(
    ("host", "ok"),
    [("127.0.0.1:8050", True), ("localhost:8050", True), ("[::1]:8050", True), ("192.168.1.20", True),
     ("wall.checheng.local:8050", True), ("evil.example:8050", False), ("", False), ("127.0.0.1.evil.example", False)],
)
def test_host_allowed(host: str, ok: bool) -> None:
    from dashboard.security import host_allowed

    assert host_allowed(host, frozenset({"wall.checheng.local"})) is ok


def test_require_role_and_current_user(tmp_path: Path) -> None:
    from flask import jsonify

    from dashboard.login import current_user, has_role, require_role

    settings = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(settings)

    @app.server.get("/admin-only")
    def _admin_only():  # type: ignore[no-untyped-def]
        user = require_role("admin")
        return jsonify(user=str(user) if user else None, operator=has_role("operator"))

    @app.server.get("/whoami")
    def _whoami():  # type: ignore[no-untyped-def]
        u = current_user()
        return jsonify(None if u is None else [u.username, u.name, u.role, str(u)])

    c = app.server.test_client()
    assert c.get("/admin-only").json == {"user": None, "operator": True}  # no sign-in required: all may act
    acc = Accounts(accounts_path(settings.data_path))
    acc.add("op", "值班甲", "password-1", role="operator")
    acc.add("chief", "主任", "password-2", role="admin")
    assert c.get("/admin-only").status_code == 302  # now sign-in is required
    assert sign_in(c, "op", "password-1").status_code == 302
    assert c.get("/whoami").json == ["op", "值班甲", "operator", "值班甲"]
    assert c.get("/admin-only").status_code == 403
    c2 = app.server.test_client()
    assert sign_in(c2, "chief", "password-2").status_code == 302
    assert c2.get("/admin-only").json == {"user": "主任", "operator": True}


def test_a_flood_of_refusals_cannot_fill_the_audit_log(tmp_path: Path) -> None:
    from dashboard.security import RefusalLimiter

    settings, c = client_for(tmp_path)
    for _ in range(150):
        r = c.post("/api/alerts/x/ack", json={"by": "x"}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
    lines = [orjson.loads(x) for x in audit_path(settings.data_path).read_bytes().splitlines()]
    refused = [e for e in lines if e["action"] == "refused"]
    assert 1 <= len(refused) <= 60 and refused[0]["detail"]["reason"] == "cross-origin"
    lim = RefusalLimiter(per_minute=2)
    key = ("10.0.0.9", "csrf")
    assert [lim.admit(key, t)[0] for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, False, False]
    assert lim.admit(key, 61.0) == (True, 2)  # the next line says how many were left out


def test_security_on_means_sign_in_even_with_no_account(tmp_path: Path) -> None:
    """SC_SECURE: nobody acts or reads anonymously, even before the first account exists."""
    _, c = client_for(tmp_path, secure=True)
    assert c.get("/api/alerts").status_code == 401
    r = c.post("/api/alerts/a-1/ack", json={"by": "街道值班长张三"})
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert c.get("/").status_code == 302
    assert c.get("/api/health").status_code in (200, 503)
