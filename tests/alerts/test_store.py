"""The alert store: numbered migrations from the previous schema, the append-only timeline, and a
record of who did what that survives concurrent actions, on each backend (the `store_url` fixture:
the SQLite file, then PostgreSQL).

Only SQLite has stores from before numbered migrations, so taking one up is tested on SQLite alone;
the file's permissions are SQLite's alone too (PostgreSQL keeps its data under its own user).
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.migrations import LATEST, migrations
from alerts.store import AlertStore, Store, open_store, pg_migrations
from alerts.timeline import Event
from core.contract import Alert

# The schema as the store created it before numbered migrations (commit 99ad0e7, alerts/store.py).
PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, rule TEXT, severity TEXT, state TEXT, community TEXT, compound_id TEXT,
    device_id TEXT, kind TEXT, metric TEXT, value TEXT, threshold TEXT, lon TEXT, lat TEXT,
    started_at TEXT, updated_at TEXT, message TEXT, resolved_at TEXT, acked_by TEXT, note TEXT,
    nearby TEXT, escalation_tier TEXT,
    subject TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts(rule, subject) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_started ON alerts(started_at);
"""


def raw(store_url: str) -> sqlite3.Connection | psycopg.Connection[Any]:
    """A connection of our own to the store's database, past the store: another writer, or mallory."""
    if store_url.startswith("postgresql://"):
        return psycopg.connect(store_url, autocommit=True)
    return sqlite3.connect(store_url, isolation_level=None)


def alert(alert_id: str, **over: object) -> Alert:
    base = dict(alert_id=alert_id, rule="gas_lel_high", severity="red", state="active", community="yanhu",
                compound_id="YH-01", device_id="G-000001", kind="gas", metric="lel_pct", value=31.0,
                threshold=25.0, lon=110.79, lat=32.65, started_at="2026-11-25T03:12:00.000Z",
                updated_at="2026-11-25T03:12:00.000Z", message="燃气浓度 31.0 %LEL ≥ 25 %LEL")
    base.update(over)
    return Alert(**base)  # type: ignore[arg-type]


def test_migrations_are_numbered_without_gaps() -> None:
    assert [n for n, _, _ in migrations()] == list(range(1, LATEST + 1))


def test_a_store_of_the_previous_schema_is_migrated_with_its_history(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    db = sqlite3.connect(path)
    db.executescript(PREVIOUS_SCHEMA)
    rows = [
        ("a-open", "active", None, None, None, "G-1"),
        ("a-acked", "acknowledged", "张三", "已派人", None, "G-2"),
        ("a-done", "resolved", "李四", "阀门已关闭", "2026-11-25T04:00:00.000Z", "G-3"),
    ]
    for aid, state, by, note, resolved_at, subject in rows:
        db.execute("INSERT INTO alerts(alert_id, rule, severity, state, community, started_at, updated_at, message,"
                   " acked_by, note, resolved_at, subject) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (aid, "gas_lel_high", "red", state, "yanhu", "2026-11-25T03:00:00.000Z",
                    "2026-11-25T03:30:00.000Z", "m", by, note, resolved_at, subject))
    db.commit()
    db.close()

    store = AlertStore(path)
    try:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert [s.event for s in store.timeline("a-open")] == [Event.RAISED]
        acked = store.timeline("a-acked")
        assert [(s.event, s.actor, s.note) for s in acked] == [
            (Event.RAISED, "system", None), (Event.ACKNOWLEDGED, "张三", "已派人")]
        done = store.timeline("a-done")
        assert [s.event for s in done] == [Event.RAISED, Event.RESOLVED]
        assert done[1].actor == "李四" and done[1].at == "2026-11-25T04:00:00.000Z"
        old = store.get("a-done")
        assert old is not None and old.resolved_by == "李四" and old.note == "阀门已关闭"
        # The one-open-alert-per-condition index survived the migration.
        store.insert(alert("a-new", device_id="G-9"), subject="G-9")
        with pytest.raises(Exception, match="gas_lel_high"):
            store.insert(alert("a-dup", device_id="G-9"), subject="G-9")
    finally:
        store.close()
    # Opening again applies nothing twice.
    again = AlertStore(path)
    try:
        assert len(again.timeline("a-acked")) == 2
    finally:
        again.close()


def test_both_backends_have_every_migration() -> None:
    # PostgreSQL's step N makes what SQLite's file N makes: a new SQLite migration needs its step there.
    assert pg_migrations.LATEST == LATEST


def columns(store_url: str) -> dict[str, set[str]]:
    db = raw(store_url)
    try:
        if isinstance(db, sqlite3.Connection):
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT LIKE 'sqlite_%'")]
            return {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in tables}
        out: dict[str, set[str]] = {}
        for t, c in db.execute("SELECT table_name, column_name FROM information_schema.columns "
                               "WHERE table_schema = 'public'"):
            out.setdefault(t, set()).add(c)
        return out
    finally:
        db.close()


def test_both_backends_reach_the_same_schema(tmp_path: Path, pg_url: str) -> None:
    lite = str(tmp_path / "alerts.sqlite")
    for where in (lite, pg_url):
        open_store(where).close()
    on_sqlite, on_pg = columns(lite), columns(pg_url)
    assert len(on_sqlite) >= 10 and {"alerts", "alert_events", "changes", "commands"} <= set(on_sqlite)
    pg_own = {"store_schema": {"version"}}  # PostgreSQL's own record of its version (SQLite: user_version)
    # Insertion order: SQLite's implicit rowid is a column of its own on PostgreSQL.
    assert {t: c - {"rowid"} for t, c in on_pg.items() if t not in pg_own} == on_sqlite
    assert {t: on_pg[t] for t in pg_own} == pg_own


def test_a_store_newer_than_the_program_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    db = raw(store_url)
    if isinstance(db, sqlite3.Connection):
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    else:
        db.execute(f"UPDATE store_schema SET version = {LATEST + 1}".encode())
    db.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        open_store(store_url)


def test_the_timeline_is_append_only(store_url: str) -> None:
    store = open_store(store_url)
    mallory = raw(store_url)
    try:
        store.insert(alert("a-1"), subject="G-000001")
        store.record("a-1", Event.NOTIFIED, "2026-11-25T03:12:01.000Z", data={"channel": "wecom", "delivered": True})
        for sql in ("UPDATE alert_events SET actor = 'mallory'", "DELETE FROM alert_events"):
            with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append-only"):
                mallory.execute(sql)
        steps = store.timeline("a-1")
        assert [s.event for s in steps] == [Event.RAISED, Event.NOTIFIED]
        assert [s.actor for s in steps] == ["system", "system"]
        assert steps[1].data == {"channel": "wecom", "delivered": True}
    finally:
        mallory.close()
        store.close()


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    AlertStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_notes_and_names_are_never_overwritten(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.insert(alert("a-1"), subject="G-000001")
        store.acknowledge("a-1", "张三", "已派人到场", "2026-11-25T03:13:00.000Z")
        a = store.acknowledge("a-1", "李四", None, "2026-11-25T03:14:00.000Z")  # no note: wipes nothing
        assert a is not None and a.acked_by == "张三" and a.note == "已派人到场"
        r = store.resolve("a-1", "2026-11-25T03:20:00.000Z", note="阀门已关闭", by="王五")
        assert r is not None and r.acked_by == "张三" and r.resolved_by == "王五"
        steps = [(s.event, s.actor, s.note) for s in store.timeline("a-1")]
        assert steps == [
            (Event.RAISED, "system", None),
            (Event.ACKNOWLEDGED, "张三", "已派人到场"),
            (Event.ACKNOWLEDGED, "李四", None),
            (Event.RESOLVED, "王五", "阀门已关闭"),
        ]
        # A resolved alert takes no more acknowledgements, and its timeline does not grow.
        assert store.acknowledge("a-1", "赵六", "晚了", "2026-11-25T03:21:00.000Z") is None
        assert len(store.timeline("a-1")) == 4
    finally:
        store.close()


def _ack_many(where: str, who: str, n: int) -> None:
    store = open_store(where)
    try:
        for i in range(n):
            store.acknowledge("a-1", who, f"{who} 第{i}次", f"2026-11-25T03:13:{i:02d}.000Z")
    finally:
        store.close()


def test_concurrent_acknowledgements_from_several_processes_are_all_recorded(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.insert(alert("a-1"), subject="G-000001")
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_ack_many, args=(store_url, f"值班员{k}", 5)) for k in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        acks = [s for s in store.timeline("a-1") if s.event == Event.ACKNOWLEDGED]
        assert len(acks) == 20
        assert {s.actor for s in acks} == {f"值班员{k}" for k in range(4)}
        first = acks[0].actor
        cur = store.get("a-1")
        assert cur is not None and cur.acked_by == first
    finally:
        store.close()


def test_the_change_feed_names_every_write_of_an_alert(store_url: str) -> None:
    store: Store = open_store(store_url)
    start = store.last_seq()
    a, b = alert("a-feed-1"), alert("a-feed-2", device_id="G-2")
    store.insert(a, subject="G-1")
    store.insert(b, subject="G-2")
    seq, ids = store.changes_since(start)
    assert ids == ["a-feed-1", "a-feed-2"] and seq == store.last_seq()
    # A value update that writes no timeline step is a change all the same; so is an acknowledgement.
    store.update("a-feed-2", value=40.0, updated_at="2026-11-25T03:13:00.000Z")
    store.acknowledge("a-feed-1", "张三", None, "2026-11-25T03:14:00.000Z")
    seq2, ids = store.changes_since(seq)
    assert ids == ["a-feed-2", "a-feed-1"] and seq2 > seq
    assert store.changes_since(seq2) == (seq2, [])  # nothing new: nothing named
    store.close()


def test_a_reader_further_behind_than_the_feed_keeps_is_told_to_reload(store_url: str) -> None:
    store = open_store(store_url)
    store.insert(alert("a-old"), subject="G-1")
    behind = store.last_seq()
    other = raw(store_url)  # another writer, one transaction
    other.execute("BEGIN")
    for i in range(10_050):  # more writes than the feed keeps (10,000)
        other.execute(f"UPDATE alerts SET value = '{i}' WHERE alert_id = 'a-old'")
    other.execute("COMMIT")
    other.close()
    seq, ids = store.changes_since(behind - 1)
    assert ids is None and seq > behind  # too far behind: reload everything
    store.close()
