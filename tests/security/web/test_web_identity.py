"""Nobody acts in a name not theirs, and field evidence does not leak, against a REAL dashboard
process over real HTTP:

- with staff accounts (and no SC_API_TOKEN: how the demo runs), a request with no cookie and no token
  is refused 401 on every /api action and read, and nothing changes;
- a personal token (`smartcommunity users token NAME`) acts as its account, with the account's role,
  is kept hashed, is listed and revoked; the body's "by" never changes who is recorded;
- field photos are kept and served without EXIF (no GPS), turned upright first, to staff and the
  link's holder only; the link's token appears in no log after refused posts;
- the field page's own post from a browser without Fetch Metadata (`Origin: null`) goes through by
  its form token, another site's does not;
- the two malformed requests that were 500s are 4xx, and an unexpected error's traceback is logged
  once per kind with a count.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from PIL import Image

from alerts.dispatch import CAUSES
from dashboard.audit import audit_path
from dashboard.security import ErrorLog
from dashboard.sessions import sessions_path
from smartcommunity.services import RunningService
from tests.security.web.conftest import Client, LiveDashboard, _deps, ack_body

GPS_IFD = 0x8825
ORIENTATION = 0x0112
MAKE = 0x010F


@pytest.fixture(scope="module")
def staffed(tmp_path_factory: pytest.TempPathFactory, broker: RunningService) -> Iterator[LiveDashboard]:
    """A dashboard with staff accounts and NO SC_API_TOKEN (the demo's way): zhang operator, kan viewer."""
    d = LiveDashboard(tmp_path_factory.mktemp("ident") / "var", broker.url.port)
    try:
        d.start()
        for name, role, label in (("deps-reader", "operator", None), ("zhang", "operator", "张三"),
                                  ("kan", "viewer", "看板员")):
            d.add_user(name, role, name=label)
        yield d
    finally:
        d.stop()


def audit_entries(live: LiveDashboard) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in audit_path(live.data).read_bytes().splitlines() if x.strip()]


def new_token(live: LiveDashboard, username: str) -> str:
    r = live.cli("users", "token", username, "--label", "test")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def dispatch(live: LiveDashboard, client: requests.Session, alert_id: str) -> tuple[str, str]:
    """(dispatch id, field-link token) of a new dispatch made by a signed-in operator."""
    r = client.post(f"{live.url}/api/alerts/{alert_id}/dispatch", json={"team": "gas", "deadline_min": 30},
                    headers={"Origin": live.url}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["dispatch_id"], r.json()["link"].split("/d/")[1]


def form_action(live: LiveDashboard, token: str, button: str) -> str:
    """The action URL of the field page's form that holds `button` (as the phone's browser reads it)."""
    page = requests.get(f"{live.url}/d/{token}", timeout=10).text
    for form in re.findall(r"<form[^>]*>.*?</form>", page, re.S):
        if f'id="{button}"' in form:
            return live.url + re.search(r'action="([^"]+)"', form).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    raise AssertionError(f"no form with {button}: {page[:500]}")


# -- no anonymous action ----------------------------------------------------------------------------
def test_no_cookie_no_token_is_refused_on_every_api_action_and_read(staffed: LiveDashboard) -> None:
    live = staffed
    a = live.alert()
    op = Client(live)
    assert op.sign_in("zhang").status_code == 302
    did, _token = dispatch(live, op, a.alert_id)
    reads = ["/api/alerts", f"/api/alerts/{a.alert_id}", f"/api/alerts/{a.alert_id}/dispatches",
             "/api/dispatch/teams", "/api/dispatch/options", "/api/dispatches", f"/api/dispatches/{did}/photos/1",
             "/api/archive/pending", "/api/report", "/api/report.csv", "/api/no-such-thing"]
    actions = [(f"/api/alerts/{a.alert_id}/ack", {"by": "街道值班长张三"}),
               (f"/api/alerts/{a.alert_id}/resolve", {"by": "街道值班长张三", "note": "处置结束"}),
               (f"/api/alerts/{a.alert_id}/dispatch", {"team": "gas", "by": "街道值班长张三"}),
               (f"/api/dispatches/{did}/cancel", {"by": "街道值班长张三"}),
               (f"/api/alerts/{a.alert_id}/archive", {"by": "街道值班长张三", "cause": CAUSES[0]})]
    for path in reads:
        r = requests.get(live.url + path, timeout=10)  # curl: no cookie, no token
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        assert r.headers["Content-Type"].startswith("application/json") and "WWW-Authenticate" in r.headers
        assert "13" not in r.text  # no phone number, no alert in the refusal
    for path, body in actions:
        r = requests.post(live.url + path, json=body, timeout=10)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        assert "/d/" not in r.text
    assert requests.get(live.url + "/api/health", timeout=10).status_code in (200, 503)  # stays open
    got = live.state(a.alert_id)
    assert got.state == "active" and got.acked_by is None
    refused = [e for e in audit_entries(live) if e["action"] == "refused" and e["detail"]["reason"] == "no credentials"]
    assert len(refused) >= len(actions) and all(e["actor"] == "anonymous" for e in refused)
    acted = [(e["actor"], e["action"]) for e in audit_entries(live)
             if e["action"].startswith("alert.") and e["target"] == a.alert_id]
    assert acted == [("zhang", "alert.dispatch")], acted  # only the signed-in dispatch above


# -- personal tokens --------------------------------------------------------------------------------
def test_a_personal_token_acts_as_its_account_with_its_role_until_revoked(staffed: LiveDashboard) -> None:
    live = staffed
    token = new_token(live, "zhang")
    a = live.alert()
    r = requests.post(f"{live.url}/api/alerts/{a.alert_id}/ack", headers=bearer(token), timeout=10,
                      json={"by": "ignored-by", "note": "电话确认"})
    assert r.status_code == 200, r.text
    assert r.json()["acked_by"] == "张三" and "ignored-by" in r.json()["note"]  # a remark, not a signature
    assert live.state(a.alert_id).acked_by == "张三"
    e = [x for x in audit_entries(live) if x["action"] == "alert.acknowledge" and x["target"] == a.alert_id]
    assert len(e) == 1 and e[0]["actor"] == "zhang" and e[0]["role"] == "operator" and e[0]["via"] == "api"
    assert e[0]["detail"]["auth"] == "token" and e[0]["detail"]["token_id"]
    token_id = e[0]["detail"]["token_id"]
    assert requests.get(f"{live.url}/api/alerts", headers=bearer(token), timeout=10).status_code == 200

    # Scoped by the account's role: a viewer's token reads, never acts.
    viewer = new_token(live, "kan")
    b = live.alert()
    assert requests.get(f"{live.url}/api/alerts/{b.alert_id}", headers=bearer(viewer), timeout=10).status_code == 200
    r = requests.post(f"{live.url}/api/alerts/{b.alert_id}/ack", json={"by": "张三"}, headers=bearer(viewer),
                      timeout=10)
    assert r.status_code == 403 and "operator" in r.json()["error"] and live.state(b.alert_id).state == "active"

    # Kept hashed: the token's text is nowhere on disk, its SHA-256 is in the store.
    db = sqlite3.connect(sessions_path(live.data))
    try:
        hashes = {row[0] for row in db.execute("SELECT token_hash FROM api_tokens")}
    finally:
        db.close()
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    for f in live.data.rglob("*"):
        if f.is_file() and f.suffix != ".log":
            assert token.encode() not in f.read_bytes(), f

    # Listed, then revoked: refused from the next request on.
    listed = live.cli("users", "token", "--list").stdout
    assert token_id in listed and "zhang" in listed
    assert live.cli("users", "token", "zhang", "--revoke", token_id).returncode == 0
    assert token_id not in live.cli("users", "token", "--list").stdout
    r = requests.post(f"{live.url}/api/alerts/{b.alert_id}/ack", json={"by": "张三"}, headers=bearer(token),
                      timeout=10)
    assert r.status_code == 401 and live.state(b.alert_id).state == "active"
    assert any(x["action"] == "token.revoke" and x["target"] == "zhang" for x in audit_entries(live))


def test_the_body_by_never_changes_who_acknowledged_or_resolved(staffed: LiveDashboard) -> None:
    live = staffed
    c = Client(live)
    assert c.sign_in("zhang").status_code == 302
    a = live.alert()
    r = c.post(f"{live.url}/api/alerts/{a.alert_id}/ack", json={"by": "ignored-by"}, headers={"Origin": live.url},
               timeout=10)
    assert r.status_code == 200 and r.json()["acked_by"] == "张三"
    r = c.post(f"{live.url}/api/alerts/{a.alert_id}/resolve", json={"by": "街道值班长", "note": "复测正常"},
               headers={"Origin": live.url}, timeout=10)
    assert r.status_code in (200, 409), r.text  # 409: the resolve guard may hold it; never another name
    if r.status_code == 200:
        assert r.json()["resolved_by"] == "张三"
    e = [x for x in audit_entries(live) if x["target"] == a.alert_id and x["action"].startswith("alert.")]
    assert e and all(x["actor"] == "zhang" and x["detail"]["auth"] == "staff" for x in e)


# -- field evidence ---------------------------------------------------------------------------------
def gps_photo() -> bytes:
    """A phone photo: 120×60, red left half, blue right, EXIF with GPS, maker and Orientation 6
    (the camera was turned: show it rotated 90° clockwise)."""
    im = Image.new("RGB", (120, 60), (0, 0, 230))
    im.paste((230, 0, 0), (0, 0, 60, 60))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "TestPhone"
    exif[GPS_IFD] = {1: "N", 2: (32.0, 39.0, 0.0), 3: "E", 4: (110.0, 47.0, 0.0)}
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as check:  # the test's own premise: the GPS is really in there
        assert check.getexif().get_ifd(GPS_IFD)
    return data


def assert_clean_and_upright(data: bytes) -> None:
    assert b"Exif" not in data and b"TestPhone" not in data
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif() and not im.getexif().get_ifd(GPS_IFD)
        assert im.size == (60, 120)  # turned as the orientation said
        top, bottom = im.convert("RGB").getpixel((30, 10)), im.convert("RGB").getpixel((30, 110))
        assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # left half (red) now on top


def walk_to_arrived(live: LiveDashboard, token: str) -> None:
    for button in ("accept", "arrive"):
        r = requests.post(form_action(live, token, button), data={}, headers={"Origin": live.url},
                          allow_redirects=False, timeout=30)
        assert r.status_code == 303, r.text[:300]


def test_field_photos_lose_their_exif_and_are_turned_upright(staffed: LiveDashboard) -> None:
    live = staffed
    op = Client(live)
    assert op.sign_in("zhang").status_code == 302
    did, token = dispatch(live, op, live.alert().alert_id)
    walk_to_arrived(live, token)
    r = requests.post(form_action(live, token, "submit-feedback"), headers={"Origin": live.url},
                      allow_redirects=False, timeout=30, data={"cause": CAUSES[1], "action": "关阀/停气", "text": "x"},
                      files={"photo": ("IMG_1.jpg", gps_photo(), "image/jpeg")})
    assert r.status_code == 303, r.text[:300]
    stored = list((live.data / "dispatch" / "photos" / did).iterdir())
    assert len(stored) == 1
    assert_clean_and_upright(stored[0].read_bytes())
    staff = op.get(f"{live.url}/api/dispatches/{did}/photos/1", timeout=10)
    holder = requests.get(f"{live.url}/d/{token}/photos/1", timeout=10)
    assert staff.status_code == holder.status_code == 200
    assert staff.content == holder.content == stored[0].read_bytes()
    assert_clean_and_upright(staff.content)
    # Nobody else: no cookie, no token; a forged link.
    assert requests.get(f"{live.url}/api/dispatches/{did}/photos/1", timeout=10).status_code == 401
    assert requests.get(f"{live.url}/d/{token[:-3]}xyz/photos/1", timeout=10).status_code == 403


def test_no_link_token_in_the_audit_or_the_log_after_refused_posts(staffed: LiveDashboard) -> None:
    live = staffed
    op = Client(live)
    assert op.sign_in("zhang").status_code == 302
    did, token = dispatch(live, op, live.alert().alert_id)
    base = f"{live.url}/d/{token}"
    refused = [
        requests.post(base + "/arrive", data={}, headers={"Origin": "http://evil.example"}, timeout=30),
        requests.post(base + "/accept", data={}, headers={"Origin": "null"}, timeout=30),  # no form token
        requests.post(base + "/accept", data={}, timeout=30,
                      headers={"Origin": live.url, "Sec-Fetch-Site": "cross-site"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert requests.post(base + "/accept", data={"name": "王"}, headers={"Origin": live.url},
                         allow_redirects=False, timeout=30).status_code == 303
    again = requests.post(base + "/accept", data={}, headers={"Origin": live.url}, timeout=30)  # already accepted
    assert again.status_code >= 400
    assert token not in audit_path(live.data).read_text()
    assert token not in live.log.read_text(errors="replace")
    cross = [e for e in audit_entries(live) if e["action"] == "refused" and e["detail"]["reason"] == "cross-origin"
             and "/d/" in (e["target"] or "")]
    assert cross and all(did in e["target"] for e in cross)  # named by the dispatch instead
    ok = [e for e in audit_entries(live) if e["action"] == "dispatch.accept" and e["outcome"] == "ok"]
    assert ok and ok[-1]["target"] == did


def test_origin_null_with_the_form_token_is_the_page_itself(staffed: LiveDashboard) -> None:
    live = staffed
    op = Client(live)
    assert op.sign_in("zhang").status_code == 302
    did, token = dispatch(live, op, live.alert().alert_id)
    action = form_action(live, token, "accept")
    assert "ft=" in action and did
    other = form_action(live, dispatch(live, op, live.alert().alert_id)[1], "accept").split("ft=")[1]
    # Another site: with the right form token but its own Origin, or Fetch Metadata saying cross-site.
    assert requests.post(action, data={}, headers={"Origin": "http://evil.example"}, timeout=30).status_code == 403
    assert requests.post(action, data={}, timeout=30,
                         headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"}).status_code == 403
    # Origin null with no, a wrong, or another link's form token.
    bare = action.split("?")[0]
    for url in (bare, bare + "?ft=wrong", bare + "?ft=" + other):
        assert requests.post(url, data={}, headers={"Origin": "null"}, timeout=30).status_code == 403, url
    # The page itself on a browser without Fetch Metadata: Origin null, its own form token.
    r = requests.post(action, data={"name": "王师傅"}, headers={"Origin": "null"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"].endswith("?ok=accepted")
    assert 'id="arrive"' in requests.get(f"{live.url}/d/{token}", timeout=10).text


# -- malformed requests -----------------------------------------------------------------------------
def test_the_two_500s_are_4xx_and_leave_no_traceback(staffed: LiveDashboard) -> None:
    live = staffed
    c = Client(live)
    assert c.sign_in("kan").status_code == 302  # any signed-in viewer could send these
    a = live.alert()
    _deps(live)
    body = ack_body(live, a.alert_id)
    short = {**body, "outputs": body["outputs"][:1]}
    single = {**body, "outputs": body["outputs"][0]}
    n = len(body["outputs"])
    for b in [short, single, {**body, "outputs": list(range(n))}, {**body, "outputs": [{"id": "x"}] * n},
              {**body, "outputs": [{"id": "nope", "property": "children"}] * n}] * 2:
        r = c.callback(b)
        assert r.status_code == 400 and "output" in r.json()["error"], r.text[:200]
    tok = new_token(live, "kan")
    for q in ("from=0001-01-01&to=9999-12-31", "month=9999-12", "from=9999-12-31&to=9999-12-31"):
        for _ in range(3):
            r = requests.get(f"{live.url}/api/report?{q}", headers=bearer(tok), timeout=30)
            assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json"), (q, r.text)
        assert c.get(f"{live.url}/report?{q}", timeout=30).status_code == 400
    assert "Traceback" not in live.log.read_text(errors="replace")
    assert c.callback(body).status_code == 200  # the well-formed body still works (and is refused by role)


def test_an_unexpected_error_is_logged_once_per_kind_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorLog(every_s=3600)

    def fail(kind: type[Exception]) -> Exception:
        try:
            raise kind(uuid.uuid4().hex)
        except Exception as exc:  # a real raise: the traceback names this line
            return exc

    with caplog.at_level(logging.ERROR, logger="dashboard.security"):
        for _ in range(50):
            errors.report(fail(IndexError), "/_dash-update-component", "POST /_dash-update-component")
        for _ in range(5):
            errors.report(fail(OverflowError), "/api/report", "GET /api/report")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [type(r.exc_info[1]).__name__ for r in tracebacks if r.exc_info] == ["IndexError", "OverflowError"]
    assert sorted(errors.counts().values()) == [5, 50]
    errors.every_s = 0  # the next repeat writes its one-line summary with the count
    with caplog.at_level(logging.ERROR, logger="dashboard.security"):
        errors.report(fail(IndexError), "/_dash-update-component", "POST /_dash-update-component")
    assert "51 times" in caplog.records[-1].getMessage() and not caplog.records[-1].exc_info


def test_bound_beyond_loopback_nobody_acts_anonymously_even_with_no_account(
        tmp_path: Path, broker: RunningService) -> None:
    from dashboard.security import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
    live = LiveDashboard(tmp_path / "var", broker.url.port)
    try:
        live.start(extra_args=("--host", "0.0.0.0"))
        a = live.alert()
        assert requests.get(f"{live.url}/api/alerts", timeout=10).status_code == 401
        r = requests.post(f"{live.url}/api/alerts/{a.alert_id}/ack", json={"by": "街道值班长张三"}, timeout=10)
        assert r.status_code == 401 and live.state(a.alert_id).state == "active"
        assert requests.get(live.url + "/", allow_redirects=False, timeout=10).status_code == 302  # to /login
    finally:
        live.stop()


def test_with_the_service_token_set_api_needs_a_bearer_header(live: LiveDashboard) -> None:
    """The contract (§5): with SC_API_TOKEN set every /api request needs `Authorization: Bearer`; a
    personal token is one, a page session alone is not."""
    a = live.alert()
    c = Client(live)
    assert c.sign_in("zhang").status_code == 302
    r = c.post(f"{live.url}/api/alerts/{a.alert_id}/ack", json={}, headers={"Origin": live.url}, timeout=10)
    assert r.status_code == 401 and live.state(a.alert_id).state == "active"
    assert c.get(f"{live.url}/api/alerts", timeout=10).status_code == 401
    token = new_token(live, "zhang")
    r = requests.post(f"{live.url}/api/alerts/{a.alert_id}/ack", json={"by": "主任"}, headers=bearer(token),
                      timeout=10)
    assert r.status_code == 200 and r.json()["acked_by"] == "张三"
    wrong = requests.get(f"{live.url}/api/alerts", headers=bearer(token + "x"), timeout=10)
    assert wrong.status_code == 401
