"""Staff accounts and sign-in state on both places they can live (core/sqldb.py): the SQLite files of
one host, and the PostgreSQL store shared by several hosts; two handles on one PostgreSQL database
stand for two dashboard hosts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.staff import Accounts, open_accounts
from dashboard.sessions import DISPLAY_KIND, SessionStore, open_sessions
from tests.conftest import make_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path | str, Path | str]:
    """(accounts target, sessions target) of one backend."""
    if request.param == "sqlite":
        return tmp_path / "accounts.json", tmp_path / "sessions.sqlite"
    url = str(request.getfixturevalue("pg_url"))
    return url, url


def test_accounts_round_trip_and_seen_by_another_handle(where: tuple[Path | str, Path | str]) -> None:
    a, b = Accounts(where[0]), Accounts(where[0])
    assert not a.any()
    a.add("zhang", "张三", "correct horse", role="operator")
    a.add("li", "李四", "battery staple", role="viewer")
    assert b.get("zhang") == a.get("zhang") and b.get("zhang").role == "operator"  # type: ignore[union-attr]
    assert b.authenticate("zhang", "correct horse") is not None
    assert b.authenticate("zhang", "wrong horse!") is None
    assert b.set_role("li", "admin") and a.get("li").role == "admin"  # type: ignore[union-attr]
    assert a.remove("zhang") and b.get("zhang") is None and not b.remove("zhang")
    assert [u for u, _ in b.list()] == ["li"]
    with pytest.raises(ValueError):
        a.add("bad name", "x", "long enough")


def test_sessions_links_tokens_and_throttle(where: tuple[Path | str, Path | str]) -> None:
    host_a, host_b = SessionStore(where[1], idle_s=3600), SessionStore(where[1], idle_s=3600)
    token, s = host_a.create("zhang", addr="127.0.0.1")
    got = host_b.get(token)
    assert got is not None and got.username == "zhang" and got.csrf == s.csrf
    assert abs(got.created - s.created) < 1e-3  # whole seconds and their fractions kept (not 4-byte REAL)
    assert host_b.count("zhang") == 1
    assert host_a.end_user("zhang") == 1 and host_b.get(token) is None

    link_id, link_token = host_a.new_link("大屏")
    assert host_b.link_for(link_token) == (link_id, "大屏")
    dt, _ = host_b.create("wall", kind=DISPLAY_KIND, link_id=link_id)
    assert host_a.get(dt) is not None
    assert host_a.revoke_link(link_id) == 1 and host_b.get(dt) is None

    tid, api = host_a.new_token("li", "脚本")
    assert host_b.token_user(api) == ("li", tid)
    assert [t[0] for t in host_b.tokens("li")] == [tid]
    assert host_b.revoke_token("li", tid) == 1 and host_a.token_user(api) is None

    for _ in range(6):
        host_a.signin_failed("wang", "10.0.0.9")
    assert host_b.signin_wait("wang", "10.0.0.8") > 0  # the other host makes the guesser wait too
    host_b.signin_succeeded("wang")
    assert host_a.signin_wait("wang", "10.0.0.8") == 0


def test_expired_sessions_end_on_every_host(where: tuple[Path | str, Path | str]) -> None:
    host_a, host_b = SessionStore(where[1], idle_s=0.5), SessionStore(where[1], idle_s=0.5)
    token, _ = host_a.create("zhang")
    time.sleep(0.7)
    assert host_b.get(token) is None and host_a.count() == 0


def test_store_url_picks_the_backend(tmp_path: Path, pg_url: str) -> None:
    local = make_settings(tmp_path / "a")
    open_accounts(local).add("zhang", "张三", "correct horse")
    open_sessions(local).create("zhang")
    assert (tmp_path / "a" / "accounts.json").exists() and (tmp_path / "a" / "sessions.sqlite").exists()

    # Two hosts, each with its own data directory, one PostgreSQL store: one set of accounts, no files.
    one, two = make_settings(tmp_path / "one", store_url=pg_url), make_settings(tmp_path / "two", store_url=pg_url)
    open_accounts(one).add("li", "李四", "battery staple")
    token, _ = open_sessions(one).create("li")
    assert open_accounts(two).get("li") is not None and open_sessions(two).get(token) is not None
    assert not (tmp_path / "one" / "accounts.json").exists() and not (tmp_path / "two" / "sessions.sqlite").exists()


def test_every_part_opens_accounts_and_sessions_where_the_store_says() -> None:
    """`open_accounts` / `open_sessions` follow SC_STORE_URL; opening the files directly would give a host
    behind the balancer accounts of its own."""
    root = Path(__file__).resolve().parents[2]
    bad = [f"{p.relative_to(root)}:{n}" for d in ("alerts", "core", "dashboard", "smartcommunity", "security")
           for p in (root / d).rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
           if "Accounts(accounts_path(" in line or "SessionStore(sessions_path(" in line]
    assert bad == [], "use core.staff.open_accounts / dashboard.sessions.open_sessions"
