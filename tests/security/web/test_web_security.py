"""Issue 12, "Staff, web and API": each probe of the report, tried again for real over HTTP against a
running `smartcommunity dashboard`, and refused. (Browser checks: test_web_browser.py; 1,000 idle
connections: test_web_connections.py.)"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import time

import orjson
import pytest
import requests

from core.timebase import epoch
from dashboard.audit import audit_path, verify
from dashboard.login import SERVICE_NAME
from dashboard.sessions import ACCOUNT_FREE, ADDRESS_FREE, sessions_path
from tests.security.web.conftest import API_TOKEN, PASSWORD, Client, LiveDashboard, ack_body

NESTED = b"[" * 100_000 + b"]" * 100_000


def audit_entries(live: LiveDashboard) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(x) for x in audit_path(live.data).read_bytes().splitlines()]


# -- sessions ---------------------------------------------------------------------------------------
def test_logout_ends_the_session_for_pages_and_callbacks(live: LiveDashboard) -> None:
    c = Client(live)
    r = c.sign_in("zhang")
    assert r.status_code == 302 and "sc_session" in c.cookies
    assert c.get(live.url + "/", allow_redirects=False).status_code == 200
    first = live.alert()
    r = c.callback(ack_body(live, first.alert_id, "到场"))
    assert r.status_code == 200, r.text
    assert live.state(first.alert_id).state == "acknowledged"
    assert live.state(first.alert_id).acked_by == "张三"  # signed by the account, not a typed name
    stolen = dict(c.cookies)

    assert c.sign_out().status_code == 302
    replay = Client(live)
    replay.cookies.update(stolen)
    page = replay.get(live.url + "/", allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    second = live.alert()
    r = replay.callback(ack_body(live, second.alert_id))
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("application/json")
    assert live.state(second.alert_id).state == "active"


def test_removing_the_account_ends_its_sessions(live: LiveDashboard) -> None:
    live.add_user("temp1", "operator", "临时")
    c = Client(live)
    assert c.sign_in("temp1").status_code == 302
    assert c.get(live.url + "/", allow_redirects=False).status_code == 200
    r = live.cli("users", "remove", "temp1")
    assert r.returncode == 0 and "1 open session(s) ended" in r.stdout
    assert c.get(live.url + "/", allow_redirects=False).status_code == 302
    a = live.alert()
    assert c.callback(ack_body(live, a.alert_id)).status_code == 401
    assert live.state(a.alert_id).state == "active"


def test_a_new_password_signs_the_old_sessions_out(live: LiveDashboard) -> None:
    live.add_user("temp2")
    c = Client(live)
    assert c.sign_in("temp2").status_code == 302
    r = live.cli("users", "add", "temp2", stdin="another password\n")
    assert r.returncode == 0
    assert c.get(live.url + "/", allow_redirects=False).status_code == 302


def test_sessions_expire(tmp_path_factory: pytest.TempPathFactory) -> None:
    d = LiveDashboard(tmp_path_factory.mktemp("expiry") / "var", None, SC_API_TOKEN=API_TOKEN,
                      SC_DASHBOARD_SESSION_IDLE_S="3", SC_DASHBOARD_SESSION_MAX_S="8")
    d.start()
    try:
        d.add_user("deps-reader")
        d.add_user("zhang")
        c = Client(d)
        assert c.sign_in("zhang").status_code == 302
        for _ in range(3):  # kept alive by use (well inside the idle limit) ...
            time.sleep(1.0)
            assert c.get(d.url + "/", allow_redirects=False).status_code == 200
        time.sleep(4.0)  # ... then idle past 3 s
        assert c.get(d.url + "/", allow_redirects=False).status_code == 302
        c2 = Client(d)
        assert c2.sign_in("zhang").status_code == 302
        deadline = time.monotonic() + 8.5
        while time.monotonic() < deadline:  # busy all along, yet the absolute limit ends it
            assert c2.get(d.url + "/api/health", timeout=5).status_code in (200, 503)
            r = c2.get(d.url + "/", allow_redirects=False)
            if r.status_code == 302:
                break
            time.sleep(1.0)
        if r.status_code != 302:  # the loop's last request may have started before the limit: once more after it
            r = c2.get(d.url + "/", allow_redirects=False)
        assert r.status_code == 302, "the session outlived dashboard_session_max_s"
    finally:
        d.stop()


def test_session_store_is_private_and_holds_no_usable_ids(live: LiveDashboard) -> None:
    c = Client(live)
    assert c.sign_in("zhang").status_code == 302
    token = c.cookies["sc_session"]
    db = sessions_path(live.data)
    for f in (db, live.data / "accounts.json", audit_path(live.data)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    raw = db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists()
                             else b"")
    assert token.encode() not in raw
    assert hashlib.sha256(token.encode()).hexdigest().encode() in raw


# -- sign-in ----------------------------------------------------------------------------------------
def test_thirty_wrong_passwords_then_the_right_one_does_not_get_in(live: LiveDashboard) -> None:
    live.add_user("target")
    attacker = Client(live, "127.0.0.2")
    codes = [attacker.sign_in("target", f"guess-{i:02d}!").status_code for i in range(30)]
    assert codes[:ACCOUNT_FREE] == [401] * ACCOUNT_FREE and set(codes[ACCOUNT_FREE:]) == {429}
    r = attacker.sign_in("target", PASSWORD)
    assert r.status_code == 429 and "sc_session" not in r.cookies and int(r.headers["Retry-After"]) >= 60
    # The account is held back from any address (a botnet gains nothing by rotating) ...
    assert Client(live, "127.0.0.3").sign_in("target", PASSWORD).status_code == 429
    # ... but other staff on other addresses sign in as usual.
    assert Client(live, "127.0.0.3").sign_in("zhang").status_code == 302
    entries = [e for e in audit_entries(live) if e["action"] == "signin" and e["actor"] == "target"]
    assert {e["status"] for e in entries} == {401, 429} and all(e["addr"] == "127.0.0.2" for e in entries[:31])


def test_parallel_guesses_get_no_more_tries(live: LiveDashboard) -> None:
    from concurrent.futures import ThreadPoolExecutor

    live.add_user("target2")
    clients = [Client(live, "127.0.0.8") for _ in range(12)]
    tokens = [c.login_csrf() for c in clients]

    def guess(i: int) -> int:
        c = clients[i]
        return c.post(live.url + "/login", allow_redirects=False, timeout=60, headers={"Origin": live.url},
                      data={"username": "target2", "password": f"guess {i}", "csrf": tokens[i]}).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(guess, range(12)))
    assert sorted(codes) == [401] * ACCOUNT_FREE + [429] * (12 - ACCOUNT_FREE)


def test_one_address_is_throttled_across_accounts(live: LiveDashboard) -> None:
    spray = Client(live, "127.0.0.4")
    codes = [spray.sign_in(f"user{i}", "Winter2026!").status_code for i in range(ADDRESS_FREE + 3)]
    assert codes[:ADDRESS_FREE] == [401] * ADDRESS_FREE and set(codes[ADDRESS_FREE:]) == {429}
    assert spray.sign_in("zhang").status_code == 429  # even a right password, from that address
    assert Client(live, "127.0.0.5").sign_in("zhang").status_code == 302


def test_throttle_is_a_delay_not_a_lockout(live: LiveDashboard) -> None:
    live.add_user("typo")
    c = Client(live, "127.0.0.6")
    for i in range(ACCOUNT_FREE):
        assert c.sign_in("typo", f"typo-{i}").status_code == 401
    assert c.sign_in("typo").status_code == 429  # within 1 s of the 5th miss
    time.sleep(2.2)  # 2**(6-5) s after the refused try
    assert c.sign_in("typo").status_code == 302


@pytest.mark.parametrize("nxt", ["/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example/",
                                 "/\n/evil.example", "/a\r\nSet-Cookie: x=y", "/%0d%0aLocation:%20//evil"])
def test_next_stays_on_this_site(live: LiveDashboard, nxt: str) -> None:
    c = Client(live)
    r = c.sign_in("zhang", nxt=nxt)
    assert r.status_code == 302, r.text
    loc = r.headers["Location"]
    assert loc.startswith("/") and not loc.startswith("//")
    assert "evil" not in loc.replace("%0d%0aLocation:%20//evil", "")  # that one stays a (harmless) path here
    assert "x=y" not in r.headers.get("Set-Cookie", "")
    # The same through the query string of the form and of a page that needs sign-in.
    form = requests.get(live.url + "/login", params={"next": nxt}, timeout=10)
    assert form.status_code == 200 and "evil.example" not in form.text
    page = requests.get(live.url + "/" + nxt.lstrip("/"), allow_redirects=False, timeout=10)
    assert page.status_code in (302, 404) and "\n" not in page.headers.get("Location", "")


def test_next_keeps_a_page_of_this_site(live: LiveDashboard) -> None:
    r = Client(live).sign_in("zhang", nxt="/wall?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "/wall?x=1"


def test_login_form_has_a_csrf_token(live: LiveDashboard) -> None:
    c = Client(live)
    c.login_csrf()
    r = c.post(live.url + "/login", data={"username": "zhang", "password": PASSWORD, "csrf": "forged"},
               allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "sc_session" not in r.cookies
    bare = requests.post(live.url + "/login", data={"username": "zhang", "password": PASSWORD},
                         allow_redirects=False, timeout=30)
    assert bare.status_code == 400 and "sc_session" not in bare.cookies
    # A cross-site form post is refused before the password is even looked at.
    x = requests.post(live.url + "/login", data={"username": "zhang", "password": PASSWORD},
                      headers={"Origin": "http://evil.example"}, allow_redirects=False, timeout=30)
    assert x.status_code == 403


def test_old_pbkdf2_hash_is_rehashed_at_sign_in(live: LiveDashboard) -> None:
    live.add_user("legacy")
    path = live.data / "accounts.json"
    doc = orjson.loads(path.read_bytes())
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 200_000)
    doc["legacy"]["hash"] = f"pbkdf2_sha256$200000${salt.hex()}${digest.hex()}"
    path.write_bytes(orjson.dumps(doc))
    assert Client(live).sign_in("legacy", "not it at all").status_code == 401
    assert orjson.loads(path.read_bytes())["legacy"]["hash"].startswith("pbkdf2_sha256$")
    assert Client(live).sign_in("legacy").status_code == 302
    assert orjson.loads(path.read_bytes())["legacy"]["hash"].startswith("scrypt:32768:8:3$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Client(live).sign_in("legacy").status_code == 302


# -- headers ----------------------------------------------------------------------------------------
def test_security_headers_on_every_response(live: LiveDashboard) -> None:
    c = Client(live)
    c.sign_in("zhang")
    probes = [
        c.get(live.url + "/"), c.get(live.url + "/wall"), requests.get(live.url + "/", allow_redirects=False),
        requests.get(live.url + "/login"), c.get(live.url + "/logout"), requests.get(live.url + "/api/health"),
        requests.get(live.url + "/api/alerts"), requests.get(live.url + "/api/nope"),
        requests.get(live.url + "/api/alerts", headers={"Authorization": f"Bearer {API_TOKEN}"}),
        requests.get(live.url + "/metrics"), c.get(live.url + "/_dash-layout"), c.get(live.url + "/_dash-dependencies"),
        requests.get(live.url + "/assets/does-not-exist.css"), requests.post(live.url + "/_dash-update-component"),
        requests.get(live.url + "/display/not-a-link"),
    ]
    for r in probes:
        h = r.headers
        where = f"{r.request.method} {r.url} → {r.status_code}"
        csp = h.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, where
        script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src, where
        assert h.get("X-Frame-Options") == "DENY", where
        assert h.get("X-Content-Type-Options") == "nosniff", where
        assert h.get("Referrer-Policy") == "same-origin", where
    for path in ("/", "/report"):  # a Dash page, and a server-made page with plotly's inline scripts
        page = c.get(live.url + path)
        assert page.status_code == 200, path
        csp = page.headers["Content-Security-Policy"]
        inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", page.text, re.S)
        assert inline, f"{path} carries inline scripts"
        for body in inline:  # every inline script of the page is allowed by its hash
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp, (path, body[:80])
    index = c.get(live.url + "/")
    assert index.headers["Cache-Control"] == "no-store"


# -- Origin / CSRF ----------------------------------------------------------------------------------
def test_cross_site_callback_is_refused(live: LiveDashboard) -> None:
    c = Client(live)
    assert c.sign_in("zhang").status_code == 302
    a = live.alert()
    body = ack_body(live, a.alert_id)
    r = c.callback(body, origin="http://evil.example")
    assert r.status_code == 403 and r.json()["error"].startswith("cross-origin")
    r = c.callback(body, origin="null")
    assert r.status_code == 403
    r = c.callback(body, origin=live.url + ".evil.example")
    assert r.status_code == 403
    # Fetch Metadata, which pages cannot set, wins over a matching Origin ...
    r = c.post(live.url + "/_dash-update-component", json=body, timeout=30, headers={
        "Origin": live.url, "Sec-Fetch-Site": "cross-site", "X-CSRFToken": c.cookies["_csrf_token"]})
    assert r.status_code == 403
    r = c.callback(body, origin=None, csrf=None)  # a form or fetch that could not read the token
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = c.callback(body, csrf="0" * 43)
    assert r.status_code == 403
    assert live.state(a.alert_id).state == "active"
    # ... and lets a same-origin page with `no-referrer` (Origin: null) through: the field page's case.
    assert live.state(a.alert_id).state == "active"
    r = c.post(live.url + "/_dash-update-component", json=body, timeout=30, headers={
        "Origin": "null", "Sec-Fetch-Site": "same-origin", "X-CSRFToken": "wrong"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]  # past the Origin check, stopped by the token
    # The page itself, same origin with its token (https: as the browser says behind a TLS proxy).
    assert c.callback(body, origin=live.url.replace("http://", "https://")).status_code == 200
    assert live.state(a.alert_id).state == "acknowledged"
    refused = [e for e in audit_entries(live) if e["action"] == "refused" and e["actor"] == "zhang"]
    assert {e["detail"]["reason"] for e in refused} >= {"cross-origin", "csrf"}


def test_api_keeps_bearer_semantics_and_refuses_cross_site(live: LiveDashboard) -> None:
    a = live.alert()
    url = f"{live.url}/api/alerts/{a.alert_id}/ack"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert requests.post(url, json={"by": "李四"}, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert requests.post(url, json={"by": "李四"}, headers=wrong, timeout=10).status_code == 401
    r = requests.post(url, json={"by": "李四"}, headers={**auth, "Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403 and live.state(a.alert_id).state == "active"
    r = requests.post(url, json={"by": "李四", "note": "电话确认"}, headers=auth, timeout=10)  # a gateway: no Origin
    # The shared service token acts as itself: the name a gateway puts in "by" is only a remark.
    assert r.status_code == 200 and r.json()["state"] == "acknowledged" and r.json()["acked_by"] == SERVICE_NAME
    assert "李四" in r.json()["note"] and "电话确认" in r.json()["note"]
    e = [x for x in audit_entries(live) if x["action"] == "alert.acknowledge" and x["target"] == a.alert_id]
    assert len(e) == 1 and e[0]["actor"] == "api-token" and e[0]["via"] == "api" and e[0]["addr"] == "127.0.0.1"


# -- malformed bodies -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [NESTED, b'{"by": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"{", b"\xff\xfe\x00garbage", b"[]", b'"text"',
     b'{"by": 5}', b'{"by": "x", "note": ["a"]}', b"NaN", b'{"by": "' + b"x" * 3000 + b'"}'],
    ids=["nested-100000", "nested-5000-in-object", "truncated", "not-utf8", "array", "string", "by-number",
         "note-list", "nan", "by-too-long"],
)
def test_malformed_api_bodies_are_json_400(live: LiveDashboard, body: bytes) -> None:
    a = live.alert()
    for path in (f"/api/alerts/{a.alert_id}/ack", f"/api/alerts/{a.alert_id}/resolve"):
        r = requests.post(live.url + path, data=body, timeout=30,
                          headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.headers["Content-Type"].startswith("application/json") and "error" in r.json()
    assert live.state(a.alert_id).state == "active"


@pytest.mark.parametrize(
    "body",
    [NESTED, b"{", b"[]", b"{}", b'{"output": "nope.children", "inputs": []}', b'{"output": 5}',
     b'{"output": "..action-done.data...action-msg.children...action-note.value..", "inputs": 7}',
     b'{"output": "..action-done.data...action-msg.children...action-note.value..", "inputs": [5]}', b""],
    ids=["nested-100000", "truncated", "array", "empty-object", "unknown-output", "output-number", "inputs-number",
         "inputs-not-objects", "empty"],
)
def test_malformed_callback_bodies_are_json_400(live: LiveDashboard, body: bytes) -> None:
    c = Client(live)
    assert c.sign_in("zhang").status_code == 302
    r = c.post(live.url + "/_dash-update-component", data=body, timeout=30,
               headers={"Content-Type": "application/json", "Origin": live.url,
                        "X-CSRFToken": c.cookies["_csrf_token"]})
    assert r.status_code == 400, (r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("application/json") and "error" in r.json()


def test_oversized_body_is_refused_with_json(live: LiveDashboard) -> None:
    r = requests.post(live.url + "/api/alerts/x/ack", data=b'{"by": "' + b"x" * (5 * 1024 * 1024) + b'"}',
                      headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413
    assert "RecursionError" not in live.log.read_text(errors="replace")
    assert "Traceback" not in live.log.read_text(errors="replace")


# -- roles ------------------------------------------------------------------------------------------
def test_viewer_sees_but_cannot_act(live: LiveDashboard) -> None:
    v = Client(live)
    assert v.sign_in("kan").status_code == 302
    assert v.get(live.url + "/", allow_redirects=False).status_code == 200
    assert v.get(live.url + "/wall", allow_redirects=False).status_code == 200
    a = live.alert()
    r = v.callback(ack_body(live, a.alert_id))
    assert r.status_code == 200 and "无权操作" in r.text
    assert live.state(a.alert_id).state == "active"
    # The API with the viewer's browser session: refused for the role, even with the bearer token.
    for path, body in ((f"/api/alerts/{a.alert_id}/ack", {"by": "kan"}),
                       (f"/api/alerts/{a.alert_id}/dispatch", {"team": "gas", "by": "kan"})):
        r = v.post(live.url + path, json=body, timeout=10,
                   headers={"Origin": live.url, "Authorization": f"Bearer {API_TOKEN}"})
        assert r.status_code == 403 and "operator" in r.json()["error"], path
    assert live.state(a.alert_id).state == "active"
    # Promoted to operator: takes effect on the open session, no new sign-in.
    assert live.cli("users", "role", "kan", "operator").returncode == 0
    try:
        r = v.callback(ack_body(live, a.alert_id))
        assert r.status_code == 200 and "无权操作" not in r.text
        assert live.state(a.alert_id).state == "acknowledged"
    finally:
        assert live.cli("users", "role", "kan", "viewer").returncode == 0
    refused = [e for e in audit_entries(live) if e["action"] == "refused" and e["actor"] == "kan"]
    assert refused and refused[0]["detail"]["reason"] == "role" and refused[0]["via"] == "console"
    roles = [e for e in audit_entries(live) if e["action"] == "account.role" and e["target"] == "kan"]
    assert [e["detail"]["new_role"] for e in roles[-2:]] == ["operator", "viewer"]


# -- display link -----------------------------------------------------------------------------------
def test_display_link_opens_the_wall_read_only_until_revoked(live: LiveDashboard) -> None:
    r = live.cli("users", "display-link", "--label", "指挥中心大屏", "--base-url", live.url)
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip()
    assert url.startswith(live.url + "/display/")
    wall = requests.Session()
    first = wall.get(url, allow_redirects=False, timeout=10)
    assert first.status_code == 302 and first.headers["Location"] == "/wall"
    assert wall.get(live.url + "/wall", allow_redirects=False, timeout=10).status_code == 200
    a = live.alert()
    cb = Client(live)
    cb.cookies.update(wall.cookies)
    r2 = cb.callback(ack_body(live, a.alert_id))
    assert r2.status_code == 200 and "无权操作" in r2.text and live.state(a.alert_id).state == "active"

    link_id = live.cli("users", "display-link", "--list").stdout.strip().splitlines()[-1].split("\t")[0]
    assert live.cli("users", "display-link", "--revoke", link_id).returncode == 0
    assert wall.get(live.url + "/wall", allow_redirects=False, timeout=10).status_code == 302
    assert cb.callback(ack_body(live, a.alert_id)).status_code == 401
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 404


# -- audit ------------------------------------------------------------------------------------------
def test_audit_log_records_who_when_what_where_and_shows_tampering(live: LiveDashboard) -> None:
    c = Client(live, "127.0.0.7")
    assert c.sign_in("zhang").status_code == 302
    a = live.alert()
    assert c.callback(ack_body(live, a.alert_id, "现场处置")).status_code == 200
    entries = audit_entries(live)
    ack = next(e for e in entries if e["action"] == "alert.acknowledge" and e["target"] == a.alert_id)
    assert ack["actor"] == "zhang" and ack["role"] == "operator" and ack["via"] == "console"
    assert ack["addr"] == "127.0.0.7" and ack["outcome"] == "ok" and ack["detail"]["note"] == "现场处置"
    assert abs(epoch(ack["at"]) - time.time()) < 120  # one instant, whatever zone the line is written in
    signin = [e for e in entries if e["action"] == "signin" and e["addr"] == "127.0.0.7"]
    assert signin and signin[-1]["outcome"] == "ok"
    assert stat.S_IMODE(audit_path(live.data).stat().st_mode) == 0o600
    assert verify(audit_path(live.data)) == []
    copy = live.data.parent / "audit-copy.jsonl"
    lines = audit_path(live.data).read_bytes().splitlines(keepends=True)
    copy.write_bytes(b"".join(lines[:3] + lines[4:]))  # someone deletes one line
    assert any("chain broken" in p for p in verify(copy))


# -- DNS rebinding ----------------------------------------------------------------------------------
def test_only_ip_addresses_localhost_and_configured_names_as_host(live: LiveDashboard) -> None:
    for host, want in (("evil.example", 400), (f"evil.example:{live.port}", 400), (f"127.0.0.1:{live.port}", 200),
                       (f"localhost:{live.port}", 200), (f"[::1]:{live.port}", 200), (f"10.0.0.5:{live.port}", 200)):
        r = requests.get(live.url + "/api/health", headers={"Host": host}, timeout=10)
        assert (r.status_code == 400) == (want == 400), (host, r.status_code)
    # A page of a re-pointed name POSTing "same-origin" to itself is still refused.
    a = live.alert()
    r = requests.post(f"{live.url}/api/alerts/{a.alert_id}/ack", json={"by": "x"}, timeout=10,
                      headers={"Host": f"rebind.example:{live.port}", "Origin": f"http://rebind.example:{live.port}",
                               "Authorization": f"Bearer {API_TOKEN}"})
    assert r.status_code == 400 and "SC_DASHBOARD_ALLOWED_HOSTS" in r.json()["error"]
    assert live.state(a.alert_id).state == "active"


def test_actions_of_other_routes_are_audited_without_their_link_tokens(live: LiveDashboard) -> None:
    a = live.alert()
    r = requests.post(f"{live.url}/api/alerts/{a.alert_id}/dispatch", timeout=30,
                      json={"team": "gas", "deadline_min": 30, "by": "值班员张三"},
                      headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert r.status_code == 201, r.text
    token = r.json()["link"].split("/d/")[1]
    accept = requests.post(f"{live.url}/d/{token}/accept", data={"name": "王师傅"}, allow_redirects=False,
                           headers={"Origin": live.url}, timeout=30)
    assert accept.status_code == 303
    entries = audit_entries(live)
    d = [e for e in entries if e["action"] == "alert.dispatch" and e["target"] == a.alert_id]
    assert len(d) == 1 and d[0]["actor"] == "api-token" and d[0]["status"] == 201
    f = [e for e in entries if e["action"] == "dispatch.accept"]
    assert f and f[-1]["actor"] == "anonymous" and f[-1]["addr"] == "127.0.0.1"
    assert f[-1]["target"] == r.json()["dispatch_id"] and f[-1]["outcome"] == "ok"
    assert token not in audit_path(live.data).read_text()
    # A field-page post from another site is refused like any other.
    x = requests.post(f"{live.url}/d/{token}/arrive", data={}, headers={"Origin": "http://evil.example"}, timeout=30)
    assert x.status_code == 403
