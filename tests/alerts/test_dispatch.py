"""Dispatch (派单): the assignee's steps on the timeline, signed links, photos checked by content,
concurrent presses leaving one record each, the escalation of an unaccepted dispatch, the
teams file refused with file/line/reason, and the schema moved from the previous version."""

from __future__ import annotations

import io
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer
from PIL import Image

from alerts.dispatch import (
    ACTIONS,
    CAUSES,
    LINK_SALT,
    Dispatch,
    DispatchBook,
    Refused,
    clean_photo,
    link_secret,
    photo_dir,
    read_link,
    sign_link,
)
from alerts.migrations import LATEST, migrate
from alerts.notify import load_roster
from alerts.store import AlertStore, Store, open_store, store_path
from alerts.teams import TeamsError, TeamsWatcher, load_teams, parse_teams
from alerts.timeline import Event
from core.settings import Settings
from core.timebase import iso
from tests.alerts.test_store import alert
from tests.conftest import make_settings


def jpeg(w: int = 64, h: int = 48, quality: int = 85, noise: bool = False) -> bytes:
    im = Image.effect_noise((w, h), 80).convert("RGB") if noise else Image.new("RGB", (w, h), (200, 40, 40))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(w: int = 32, h: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (0, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> Iterator[tuple[Settings, Store, DispatchBook]]:
    """On each backend (`store_url`): settings naming the store, the store with one alert, the book."""
    s = make_settings(tmp_path / "var", dispatch_photo_max_bytes=200_000, store_url=store_url)
    store = open_store(s)
    store.insert(alert("a-1", community="lanshanjun", compound_id="LSJ-01",
                       started_at=iso(time.time() - 300)), subject="G-000001")
    yield s, store, DispatchBook(store, s)
    store.close()


def outbox(s: Settings) -> list[dict]:
    """What was queued: the outbox file, or the store's table on PostgreSQL (alerts/delivery.py)."""
    from alerts.delivery import Outbox, outbox_for

    box = outbox_for(s)
    if isinstance(box, Outbox) and not box.path.exists():
        return []
    return [e for _, e in box.read(0) if e is not None]


def dispatch(book: DispatchBook, team: str = "gas", member: str | None = None, minutes: float = 30,
             now: float | None = None) -> Dispatch:
    teams = load_teams()
    t = teams.get(team)
    assert t is not None
    now = time.time() if now is None else now
    return book.create("a-1", t, t.member(member) if member else None, iso(now + minutes * 60), "张三", "速去", now)


def test_dispatch_accept_arrive_feedback_are_steps_on_the_timeline(env: tuple) -> None:
    s, store, book = env
    d = dispatch(book, member="gas-wang")
    assert d.state == "sent" and d.assignee == "王师傅"
    msgs = outbox(s)
    assert len(msgs) == 1 and msgs[0]["event"] == "dispatch" and msgs[0]["dispatch_id"] == d.dispatch_id
    assert msgs[0]["to"] == [{"name": "王师傅", "phone": "13800000101"}]
    assert "/d/" in msgs[0]["link"] and msgs[0]["link"] in msgs[0]["text"]
    assert read_link(link_secret(s.data_path), msgs[0]["link"].split("/d/")[1], 60) == ("a-1", d.dispatch_id)

    t0 = time.time()
    book.accept(d.dispatch_id, t0 + 1)
    book.arrive(d.dispatch_id, t0 + 2)
    photos = [jpeg(), png()]
    done = book.feedback(d.dispatch_id, CAUSES[0], ACTIONS[0], "阀门松动，已紧固", photos, t0 + 3)
    assert done.state == "done" and done.cause == CAUSES[0] and done.action_taken == ACTIONS[0]
    steps = store.timeline("a-1")
    assert [st.event for st in steps] == [Event.RAISED, Event.DISPATCHED, Event.NOTIFIED, Event.ACCEPTED,
                                          Event.ARRIVED, Event.FEEDBACK]
    assert steps[1].actor == "张三" and steps[1].data["team"] == "gas" and steps[1].data["member"] == "gas-wang"
    assert steps[3].actor == "王师傅"
    fb = steps[5]
    assert fb.note == "阀门松动，已紧固" and fb.data["cause"] == CAUSES[0] and len(fb.data["photos"]) == 2
    # The photos are stored privately under SC_DATA_DIR, re-encoded without metadata (the same pictures).
    folder = photo_dir(s.data_path, d.dispatch_id)
    assert folder.stat().st_mode & 0o777 == 0o700
    files = sorted(folder.iterdir())
    assert [f.read_bytes() for f in files] == [clean_photo(p, k) for p, k in zip(photos, ("jpeg", "png"), strict=True)]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert [p["type"] for p in done.photos] == ["image/jpeg", "image/png"]
    assert (s.data_path / "dispatch.secret").stat().st_mode & 0o777 == 0o600


def test_steps_out_of_order_or_twice_are_refused(env: tuple) -> None:
    _s, store, book = env
    d = dispatch(book)
    with pytest.raises(Refused) as exc:
        book.arrive(d.dispatch_id, time.time())
    assert exc.value.status == 409
    with pytest.raises(Refused):
        book.feedback(d.dispatch_id, CAUSES[0], ACTIONS[0], "", [], time.time())
    book.accept(d.dispatch_id, time.time(), name="李师傅")
    with pytest.raises(Refused, match="已接单"):
        book.accept(d.dispatch_id, time.time())
    accepted = [st.actor for st in store.timeline("a-1") if st.event == Event.ACCEPTED]
    assert accepted == ["李师傅（十堰燃气公司张湾抢修队）"]
    book.arrive(d.dispatch_id, time.time())  # signed by whoever accepted the team's dispatch
    assert store.timeline("a-1")[-1].actor == "李师傅（十堰燃气公司张湾抢修队）"
    with pytest.raises(Refused) as nf:
        book.accept("d-nonexistent", time.time())
    assert nf.value.status == 404


@pytest.mark.parametrize("case", ["too_big", "not_image", "named_jpg_but_text", "truncated", "four_photos",
                                  "bad_cause", "gif"])
def test_bad_feedback_is_refused_and_changes_nothing(env: tuple, case: str) -> None:
    s, store, book = env
    d = dispatch(book)
    book.accept(d.dispatch_id, time.time())
    book.arrive(d.dispatch_id, time.time())
    before = store.timeline("a-1")
    cause = CAUSES[1]
    big = jpeg(900, 900, quality=95, noise=True)
    assert len(big) > s.dispatch_photo_max_bytes  # really over the bound
    photos = {
        "too_big": [jpeg(), big],
        "not_image": [b"%PDF-1.7 not a photo at all"],
        "named_jpg_but_text": [b"hello, I am text in a file called photo.jpg"],
        "truncated": [jpeg(200, 200, noise=True)[:1500]],  # JPEG magic, cut short
        "four_photos": [jpeg(), jpeg(), jpeg(), jpeg()],
        "bad_cause": [jpeg()],
        "gif": [b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"],
    }[case]
    if case == "bad_cause":
        cause = "不存在的原因"
    with pytest.raises(Refused) as exc:
        book.feedback(d.dispatch_id, cause, ACTIONS[0], "x", photos, time.time())
    assert exc.value.status in (400, 413, 415)
    assert exc.value.message  # a message for the person holding the phone
    after = book.get(d.dispatch_id)
    assert after is not None and after.state == "arrived" and after.photos == [] and after.cause is None
    assert store.timeline("a-1") == before
    assert not photo_dir(s.data_path, d.dispatch_id).exists()
    # ... and the same person can then send a good feedback.
    ok = book.feedback(d.dispatch_id, CAUSES[1], ACTIONS[0], "好了", [jpeg()], time.time())
    assert ok.state == "done" and len(list(photo_dir(s.data_path, d.dispatch_id).iterdir())) == 1


def test_links_forged_expired_or_for_another_dispatch_are_refused(env: tuple) -> None:
    s, _store, book = env
    d = dispatch(book)
    secret = link_secret(s.data_path)
    good = sign_link(secret, "a-1", d.dispatch_id)
    assert read_link(secret, good, 60) == ("a-1", d.dispatch_id)
    forged = URLSafeTimedSerializer(b"not the secret", salt=LINK_SALT).dumps({"a": "a-1", "d": d.dispatch_id})
    with pytest.raises(Refused) as e1:
        read_link(secret, forged, 60)
    assert e1.value.status == 403
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    with pytest.raises(Refused):
        read_link(secret, tampered, 60)
    other_salt = URLSafeTimedSerializer(secret, salt="another-purpose").dumps({"a": "a-1", "d": d.dispatch_id})
    with pytest.raises(Refused):
        read_link(secret, other_salt, 60)
    time.sleep(2.1)
    with pytest.raises(Refused) as e2:
        read_link(secret, good, 1)
    assert e2.value.status == 410 and "过期" in e2.value.message


def _press(where: str, data_dir: str, dispatch_id: str, who: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = make_settings(Path(data_dir))
    store = open_store(where)
    book = DispatchBook(store, s)
    try:
        book.accept(dispatch_id, time.time(), name=who)
        out.put(("ok", who))
    except Refused as exc:
        out.put((exc.status, who))
    finally:
        store.close()


def test_concurrent_actions_leave_a_complete_timeline(env: tuple) -> None:
    """Six phones press 接单 at once in six processes while operators acknowledge and add notes in
    threads: exactly one acceptance, five clear refusals, and every other step recorded."""
    s, store, book = env
    d = dispatch(book)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_press, args=(s.store_url, str(s.data_path), d.dispatch_id, f"师傅{k}", q))
             for k in range(6)]

    def operator(k: int) -> None:
        for i in range(5):
            store.acknowledge("a-1", f"值班员{k}", f"第{i}次", iso(time.time()))
            store.record("a-1", Event.NOTE, iso(time.time()), by=f"值班员{k}", note=f"备注{i}")

    threads = [threading.Thread(target=operator, args=(k,)) for k in range(3)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(r[0] for r in results if r[0] != "ok") == [409] * 5
    winners = [r[1] for r in results if r[0] == "ok"]
    assert len(winners) == 1
    steps = store.timeline("a-1")
    accepted = [st for st in steps if st.event == Event.ACCEPTED]
    assert len(accepted) == 1 and accepted[0].actor.startswith(winners[0])
    assert len([st for st in steps if st.event == Event.ACKNOWLEDGED]) == 15
    assert len([st for st in steps if st.event == Event.NOTE]) == 15
    assert [st.seq for st in steps] == sorted(st.seq for st in steps)
    cur = book.get(d.dispatch_id)
    assert cur is not None and cur.state == "accepted"


def test_an_unaccepted_dispatch_escalates_once_and_an_accepted_one_never(env: tuple) -> None:
    s, store, book = env
    roster = load_roster()
    now = time.time()
    late = dispatch(book, team="gas", minutes=1, now=now)
    taken = dispatch(book, team="police", minutes=1, now=now)
    book.accept(taken.dispatch_id, now + 10)
    assert book.escalate_overdue(roster, now + 30) == []  # not yet due
    up = book.escalate_overdue(roster, now + 61)
    assert [d.dispatch_id for d in up] == [late.dispatch_id]
    assert book.escalate_overdue(roster, now + 120) == []  # once
    esc = [st for st in store.timeline("a-1") if st.event == Event.ESCALATED]
    assert len(esc) == 1 and esc[0].data["dispatch_id"] == late.dispatch_id
    assert esc[0].data["reason"] == "dispatch_not_accepted" and esc[0].data["tier"] == 2
    msg = [m for m in outbox(s) if m["event"] == "dispatch_escalated"]
    assert len(msg) == 1 and msg[0]["to"] == [p.as_json() for p in roster.contacts("lanshanjun", 2)]
    assert "未在" in msg[0]["text"] and "十堰燃气公司张湾抢修队" in msg[0]["text"]


def test_a_dispatch_is_refused_for_an_unknown_alert_a_team_elsewhere_or_a_past_deadline(env: tuple) -> None:
    _s, store, book = env
    teams = load_teams()
    now = time.time()
    with pytest.raises(Refused) as e:
        book.create("nope", teams.teams["gas"], None, iso(now + 60), "张三", None, now)
    assert e.value.status == 404
    with pytest.raises(Refused, match="does not serve"):  # 艳湖's property manager, for 蓝山郡
        book.create("a-1", teams.teams["pm-yanhu"], None, iso(now + 60), "张三", None, now)
    with pytest.raises(Refused, match="past"):
        book.create("a-1", teams.teams["gas"], None, iso(now - 1), "张三", None, now)
    assert [st.event for st in store.timeline("a-1")] == [Event.RAISED]


# ---------------------------------------------------------------- the teams file


GOOD = """teams:
  - id: gas
    name: 燃气公司
    type: 燃气公司
    members:
      - {id: w, name: 王, phone: "1"}
"""


@pytest.mark.parametrize(("text", "line", "reason"), [
    (GOOD.replace("type: 燃气公司", "type: 消防队"), 4, "type '消防队' is not one of"),
    (GOOD + "  - id: gas\n    name: x\n    type: 物业\n    members: [{id: z, name: z, phone: '2'}]\n", 7,
     "team id 'gas' is used twice"),
    (GOOD.replace(', phone: "1"', ""), 6, "no way to reach them"),
    (GOOD.replace("    members:\n", "    communities: [mars]\n    members:\n"), 5, "unknown community 'mars'"),
    (GOOD.replace("name: 燃气公司", "name: 燃气: 公司"), 3, "not valid YAML"),
    ("", 1, "empty"),
    ("teams: {gas: 1}\n", 1, "non-empty list"),
    (GOOD.replace("{id: w,", "{id: w, fax: '3',"), 6, "unknown member field(s) fax"),
])
def test_a_bad_teams_file_is_refused_with_file_line_and_reason(tmp_path: Path, text: str, line: int,
                                                                reason: str) -> None:
    p = tmp_path / "teams.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(TeamsError) as exc:
        load_teams(str(p))
    assert exc.value.path == p.resolve() and exc.value.line == line, str(exc.value)
    assert reason in exc.value.reason
    assert str(exc.value).startswith(f"{p.resolve()}:{line}: ")


def test_the_bundled_teams_cover_the_six_kinds_and_a_bad_edit_keeps_the_last_good(tmp_path: Path) -> None:
    kinds = {t.type for t in load_teams().teams.values()}
    assert kinds == {"物业", "燃气公司", "供水公司", "供电所", "网格员", "派出所"}
    p = tmp_path / "teams.yaml"
    p.write_text(GOOD, encoding="utf-8")
    w = TeamsWatcher(str(p))
    assert list(w.current().teams) == ["gas"]
    time.sleep(0.01)
    p.write_text(GOOD.replace("type: 燃气公司", "type: 消防队"), encoding="utf-8")
    assert list(w.current().teams) == ["gas"]  # the running teams stay
    assert w.error is not None and ":4:" in w.error
    assert parse_teams(GOOD, p).teams["gas"].members[0].contacts == {"phone": "1"}


# ---------------------------------------------------------------- migrations


def test_a_store_of_the_previous_schema_gains_dispatches_and_archives(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, upto=3) == 3  # the schema before dispatches
    db.execute("INSERT INTO alerts(alert_id, rule, severity, state, community, started_at, updated_at, message,"
               " subject) VALUES ('a-old', 'gas_lel_high', 'red', 'resolved', 'yanhu', '2026-11-01T00:00:00.000Z',"
               " '2026-11-01T00:10:00.000Z', 'm', 'G-1')")
    db.close()
    store = AlertStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == LATEST
        tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"dispatches", "archives"} <= tables
        old = store.get("a-old")
        assert old is not None and old.state == "resolved"
    finally:
        store.close()


def test_the_running_alert_service_escalates_an_overdue_dispatch(settings: Settings) -> None:
    """The real alert service (real broker) notices a dispatch nobody accepted, within its check period."""
    from alerts.service import SILENCE_CHECK_S, AlertService
    from tests.conftest import wait_until

    store = AlertStore(store_path(settings.data_path))
    store.insert(alert("a-late", community="yanhu", started_at=iso(time.time() - 900)), subject="G-L")
    t = load_teams().teams["police"]
    made = time.time() - 600
    d = DispatchBook(store, settings).create("a-late", t, None, iso(made + 300), "张三", None, made)  # due 5 min ago
    svc = AlertService(settings)
    th = threading.Thread(target=svc.run_forever, daemon=True)
    th.start()
    try:
        # The alert itself, unacknowledged for 15 min, escalates too: look for the dispatch's own step.
        def dispatch_escalations() -> list:
            return [st for st in store.timeline("a-late") if st.event == Event.ESCALATED and "dispatch_id" in st.data]

        assert wait_until(dispatch_escalations, SILENCE_CHECK_S + 10)
    finally:
        svc.stop()
        th.join(10)
    esc = dispatch_escalations()
    assert len(esc) == 1 and esc[0].data["dispatch_id"] == d.dispatch_id
    assert any(m["event"] == "dispatch_escalated" and m["dispatch_id"] == d.dispatch_id for m in outbox(settings))
    store.close()
