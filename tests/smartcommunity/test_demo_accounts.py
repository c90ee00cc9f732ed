"""`make demo` signs in like a deployment: it makes its staff accounts (generated passwords, kept in a
0600 file) and a wall display link once, and prints how to sign in."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from core.staff import Accounts, accounts_path
from dashboard.sessions import SessionStore, sessions_path
from smartcommunity.services_cli import DEMO_ACCOUNTS, demo_accounts_path, demo_sign_in_text
from tests.conftest import make_settings


def test_the_demo_makes_its_accounts_once_and_keeps_the_passwords_private(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    text = demo_sign_in_text(s, terminal=True)
    creds = dict(re.findall(r"^  (\S+) / (\S+)", text, re.M))
    assert set(creds) == {u for u, _, _ in DEMO_ACCOUNTS} and "sign in at" in text
    accounts = Accounts(accounts_path(s.data_path))
    roles = {u: r for u, _, r in DEMO_ACCOUNTS}
    for username, password in creds.items():
        acc = accounts.authenticate(username, password)
        assert acc is not None and acc.role == roles[username]
        assert accounts.authenticate(username, password + "x") is None
    assert len(set(creds.values())) == len(creds) and all(len(p) >= 12 for p in creds.values())
    f = demo_accounts_path(s)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and f.read_text(encoding="utf-8") == text
    link = re.search(r"/display/(\S+)", text)
    assert link
    store = SessionStore(sessions_path(s.data_path))
    try:
        assert store.link_for(link.group(1)) is not None
    finally:
        store.close()
    # A second start makes nothing new; with its output in a log the passwords stay in the file.
    logged = demo_sign_in_text(s, terminal=False)
    assert accounts.list() == sorted((u, n) for u, n, _ in DEMO_ACCOUNTS)
    assert not any(p in logged for p in creds.values()) and link.group(1) not in logged
    assert str(f) in logged


def test_existing_accounts_are_left_alone(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    Accounts(accounts_path(s.data_path)).add("zhang", "张三", "correct horse")
    text = demo_sign_in_text(s, terminal=True)
    assert "smartcommunity users list" in text
    assert [u for u, _ in Accounts(accounts_path(s.data_path)).list()] == ["zhang"]
    assert not demo_accounts_path(s).exists()
