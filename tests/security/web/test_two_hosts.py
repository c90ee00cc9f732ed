"""Two dashboard hosts over one PostgreSQL store (`SC_STORE_URL`): each has its own data directory
(no file shared), and any of them serves any signed-in person: a session made on one is good on the
other, an account removed or a token revoked on one is refused on the other at the next request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from smartcommunity.services import RunningService
from tests.security.web.conftest import PASSWORD, Client, LiveDashboard


@pytest.fixture
def hosts(tmp_path: Path, broker: RunningService, pg_url: str) -> Iterator[tuple[LiveDashboard, LiveDashboard]]:
    a = LiveDashboard(tmp_path / "host-a", broker.url.port, SC_STORE_URL=pg_url)
    b = LiveDashboard(tmp_path / "host-b", broker.url.port, SC_STORE_URL=pg_url)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_a_person_signed_in_on_one_host_is_served_by_the_other(hosts: tuple[LiveDashboard, LiveDashboard]) -> None:
    a, b = hosts
    a.add_user("zhang", "operator", name="张三")  # made with host A's CLI: host B knows the account
    a.add_user("li", "viewer", name="李四")  # (with no account left, a loopback dev run signs nobody in)
    assert b.cli("users", "list").stdout.count("zhang") == 1
    on_a = Client(a)
    r = on_a.sign_in("zhang", PASSWORD)
    assert r.status_code in (302, 303), r.text[:300]
    assert on_a.get(a.url + "/api/alerts", timeout=10).status_code == 200

    # The same browser, its requests now sent to host B (the balancer moved it): still signed in.
    on_b = Client(b)
    on_b.cookies.update(on_a.cookies)
    assert on_b.get(b.url + "/api/alerts", timeout=10).status_code == 200
    assert Client(b).get(b.url + "/api/alerts", timeout=10).status_code == 401  # no cookie: refused there too

    token = b.cli("users", "token", "zhang", "--label", "脚本").stdout.strip()
    assert requests.get(a.url + "/api/alerts", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200

    # Removed on host B: host A refuses the session and the token at the next request.
    assert b.cli("users", "remove", "zhang").returncode == 0
    assert on_a.get(a.url + "/api/alerts", timeout=10).status_code == 401
    assert requests.get(a.url + "/api/alerts", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401
    for host in (a, b):
        assert not (host.data / "accounts.json").exists() and not (host.data / "sessions.sqlite").exists()
