"""The PostgreSQL backend of the alert store, for a deployment on more than one host (`SC_STORE_URL=postgresql://...`).

The same `Store` as the SQLite file, over one connection guarded by a lock (as the SQLite backend
does): every write is one transaction that first takes the store's write lock (a transaction-level
advisory lock), so writers on every host go one after the other as they do on SQLite and the change
feed is numbered in commit order. The timeline is append-only by a trigger; the schema moves by the
numbered steps of `alerts/store/pg_migrations.py`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts.store import COMMAND, AlreadyOpen, ReportRows, Row, StepRow, StepSpec, Store
from alerts.store.pg_migrations import LATEST, STEPS, WRITE_LOCK
from alerts.store.sqlite import _FIELDS, _decode, _dispatch, _dispatch_value, _encode
from alerts.timeline import SYSTEM, Event, Step
from core.contract import Alert, AlertState
from core.timebase import epoch

Conn = psycopg.Connection[dict[str, Any]]


def _in(n: int) -> str:
    return ", ".join(["%s"] * n)


def _drow(r: dict[str, Any]) -> Row:
    """A dispatch as plain fields (PostgreSQL's insertion counter is no field of it)."""
    r.pop("rowid", None)
    return _dispatch(r)


def migrate(db: Conn, upto: int | None = None) -> int:
    """Bring the store to `upto` (default: the latest), each step in one transaction; the version it is at."""
    target = LATEST if upto is None else upto
    with db.transaction():
        # Two hosts opening a new store at once: one migrates, the other then finds it done.
        db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS store_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM store_schema").fetchone()
        if row is None:
            db.execute("INSERT INTO store_schema(version) VALUES (0)")
        version = int(row["version"]) if row else 0
        if version > LATEST:
            raise RuntimeError(f"the alert store is at schema {version}, newer than this program ({LATEST})")
        for number, sql in enumerate(STEPS, start=1):
            if version < number <= target:
                with db.transaction():
                    db.execute(sql.encode())  # several statements: no parameters
                    db.execute("UPDATE store_schema SET version = %s", (number,))
                version = number
    return version


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        self._lock = threading.Lock()
        self._db: Conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Conn]:
        with self._lock:
            yield self._db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One write transaction, after the store's write lock (see pg_migrations.WRITE_LOCK)."""
        with self._lock, self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            cmd = COMMAND.get()
            if cmd is not None:
                self._db.execute("INSERT INTO commands(command_id, name, actor, at) VALUES (%s, %s, %s, %s)"
                                 " ON CONFLICT (command_id) DO NOTHING", cmd)
            yield self._db

    @staticmethod
    def _step(db: Conn, alert_id: str, event: str, at: str, actor: str | None, note: str | None,
              data: dict[str, Any] | None) -> None:
        db.execute(
            "INSERT INTO alert_events(alert_id, at, event, actor, note, data) VALUES (%s, %s, %s, %s, %s, %s)",
            (alert_id, at, str(event), actor or SYSTEM, note, orjson.dumps(data).decode() if data else None),
        )

    # -- the timeline ------------------------------------------------------------------------------
    def record(self, alert_id: str, event: str, at: str, *, by: str | None = None, note: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        with self._tx() as db:
            self._step(db, alert_id, event, at, by, note, data)

    def record_many(self, steps: list[StepRow]) -> None:
        if not steps:
            return
        with self._tx() as db:
            for alert_id, event, at, by, note, data in steps:
                self._step(db, alert_id, event, at, by, note, data)

    def timeline(self, alert_id: str) -> list[Step]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM alert_events WHERE alert_id = %s ORDER BY seq", (alert_id,)).fetchall()
        return [Step(r["seq"], r["alert_id"], r["at"], r["event"], r["actor"], r["note"],
                     orjson.loads(r["data"]) if r["data"] else {}) for r in rows]

    # -- alerts ------------------------------------------------------------------------------------
    def insert(self, alert: Alert, subject: str) -> None:
        cols = [*_FIELDS, "subject"]
        vals = [_encode(f, getattr(alert, f)) for f in _FIELDS] + [subject]
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO alerts({', '.join(cols)}) VALUES ({_in(len(cols))})", vals)
                self._step(db, alert.alert_id, Event.RAISED, alert.started_at, SYSTEM, None,
                           {"severity": alert.severity, "value": alert.value, "message": alert.message})
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyOpen(f"{alert.rule} on {subject}") from exc

    def update(self, alert_id: str, step: StepSpec | None = None, **changes: Any) -> Alert | None:
        if not changes:
            return self.get(alert_id)
        sets = ", ".join(f"{k} = %s" for k in changes)
        args = [_encode(k, v) for k, v in changes.items()] + [alert_id]
        with self._tx() as db:
            row = db.execute(
                f"UPDATE alerts SET {sets} WHERE alert_id = %s AND state != 'resolved' RETURNING *", args
            ).fetchone()
            if row is not None and step is not None:
                event, at, note, data = step
                self._step(db, alert_id, event, at, SYSTEM, note, data)
        return _decode(row) if row else None

    def get(self, alert_id: str) -> Alert | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
        return _decode(row) if row else None

    def subject_of(self, alert_id: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT subject FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
        return row["subject"] if row else None

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM alerts WHERE state != 'resolved'").fetchall()
        return {(r["rule"], r["subject"]): _decode(r) for r in rows}

    def list(
        self, state: str | None = None, community: str | None = None, limit: int = 500, *,
        severity: str | None = None, rule: str | None = None, device_id: str | None = None,
        compound_id: str | None = None, since: str | None = None, until: str | None = None,
        updated_since: str | None = None,
    ) -> list[Alert]:
        q = "SELECT * FROM alerts"
        where: list[str] = []
        args: list[Any] = []
        for col, raw in (("state", state), ("severity", severity)):
            if raw:
                vals = [s.strip() for s in raw.split(",") if s.strip()]
                where.append(f"{col} IN ({_in(len(vals))})")
                args.extend(vals)
        for cond, val in (("community = %s", community), ("rule = %s", rule), ("device_id = %s", device_id),
                          ("compound_id = %s", compound_id), ('started_at COLLATE "C" >= %s', since),
                          ('started_at COLLATE "C" <= %s', until), ('updated_at COLLATE "C" >= %s', updated_since)):
            if val:
                where.append(cond)
                args.append(val)
        if where:
            q += " WHERE " + " AND ".join(where)
        # COLLATE "C": ISO times and ids compare as text, byte by byte, as SQLite compares them.
        q += ' ORDER BY started_at COLLATE "C" DESC, rowid DESC LIMIT %s'
        args.append(limit)
        with self._read() as db:
            rows = db.execute(q, args).fetchall()
        return [_decode(r) for r in rows]

    def acknowledge(self, alert_id: str, by: str, note: str | None, now: str) -> Alert | None:
        with self._tx() as db:
            row = db.execute(
                "UPDATE alerts SET state = %s, acked_by = COALESCE(acked_by, %s), "  # as sqlite.py: the first stays
                "note = CASE WHEN acked_by IS NULL THEN COALESCE(%s, note) ELSE note END, "
                "updated_at = CASE WHEN acked_by IS NULL THEN %s ELSE updated_at END "
                "WHERE alert_id = %s AND state != 'resolved' RETURNING *",
                (str(AlertState.ACKNOWLEDGED), by, note or None, now, alert_id),
            ).fetchone()
            if row is not None:
                self._step(db, alert_id, Event.ACKNOWLEDGED, now, by, note, None)
        return _decode(row) if row else None

    def resolve(
        self, alert_id: str, now: str, note: str | None = None, by: str | None = None, *,
        data: dict[str, Any] | None = None, watch_s: float | None = None,
    ) -> Alert | None:
        with self._tx() as db:
            row = db.execute(
                "UPDATE alerts SET state = %s, updated_at = %s, resolved_at = %s, note = COALESCE(%s, note), "
                "resolved_by = %s WHERE alert_id = %s AND state != 'resolved' RETURNING *",
                (str(AlertState.RESOLVED), now, now, note or None, by, alert_id),
            ).fetchone()
            if row is not None:
                self._step(db, alert_id, Event.RESOLVED, now, by, note, {"by_hand": by is not None, **(data or {})})
                if watch_s:
                    closed = epoch(now)
                    self._watch(db, row["rule"], row["subject"], alert_id, closed, closed + watch_s)
        return _decode(row) if row else None

    @staticmethod
    def _watch(db: Conn, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        db.execute("INSERT INTO watches(rule, subject, alert_id, closed_at, until) VALUES (%s, %s, %s, %s, %s)"
                   " ON CONFLICT (rule, subject) DO UPDATE SET alert_id = excluded.alert_id,"
                   " closed_at = excluded.closed_at, until = excluded.until", (rule, subject, alert_id, closed, until))

    def set_watch(self, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        with self._tx() as db:
            self._watch(db, rule, subject, alert_id, closed, until)

    def watch_for(self, rule: str, subject: str) -> Row | None:
        with self._read() as db:
            r = db.execute("SELECT * FROM watches WHERE rule = %s AND subject = %s", (rule, subject)).fetchone()
        return dict(r) if r else None

    def watches(self, live_at: float) -> list[Row]:
        with self._read() as db:
            return [dict(r) for r in db.execute("SELECT * FROM watches WHERE until > %s", (live_at,))]

    def condition_of(self, alert_id: str) -> tuple[Alert, str, dict[str, Any] | None] | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
            if row is None:
                return None
            c = db.execute("SELECT * FROM conditions WHERE rule = %s AND subject = %s",
                           (row["rule"], row["subject"])).fetchone()
        cond = None if c is None else {
            "true_since_ts": c["true_since_ts"], "clear_since": c["clear_since"],
            "last_value": orjson.loads(c["last_value"]) if c["last_value"] is not None else None,
            "last_evidence": c["last_evidence"]}
        return _decode(row), row["subject"], cond

    def reopen(self, alert_id: str, now: str, data: dict[str, Any], **changes: Any) -> Alert | None:
        sets = "".join(f", {k} = %s" for k in changes)
        args = [_encode(k, v) for k, v in changes.items()]
        try:
            with self._tx() as db:
                row = db.execute(
                    "UPDATE alerts SET state = %s, resolved_at = NULL, resolved_by = NULL, acked_by = NULL,"
                    " reopened = reopened + 1,"
                    f" updated_at = %s{sets} WHERE alert_id = %s AND state = 'resolved' RETURNING *",
                    [str(AlertState.ACTIVE), now, *args, alert_id]).fetchone()
                if row is not None:
                    db.execute("DELETE FROM watches WHERE alert_id = %s", (alert_id,))
                    self._step(db, alert_id, Event.REOPENED, now, SYSTEM, None, {**data, "reopened": row["reopened"]})
        except psycopg.errors.UniqueViolation:  # a new alert for the same condition is open already
            return None
        return _decode(row) if row else None

    # -- condition state and last-heard times ------------------------------------------------------
    def load_conditions(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM conditions").fetchall()
        return {(r["rule"], r["subject"]): {
            "true_since_ts": r["true_since_ts"], "clear_since": r["clear_since"],
            "last_value": orjson.loads(r["last_value"]) if r["last_value"] is not None else None,
            "last_evidence": r["last_evidence"], "data": orjson.loads(r["data"]) if r["data"] else {},
        } for r in rows}

    def save_conditions(self, upserts: list[tuple[str, str, dict[str, Any]]],
                        deletes: list[tuple[str, str]]) -> None:
        if not upserts and not deletes:
            return
        with self._tx() as db, db.cursor() as cur:
            if deletes:
                cur.executemany("DELETE FROM conditions WHERE rule = %s AND subject = %s", deletes)
            if upserts:
                cur.executemany(
                    "INSERT INTO conditions(rule, subject, true_since_ts, clear_since, last_value, last_evidence,"
                    " data) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (rule, subject) DO UPDATE SET"
                    " true_since_ts = excluded.true_since_ts, clear_since = excluded.clear_since,"
                    " last_value = excluded.last_value, last_evidence = excluded.last_evidence,"
                    " data = excluded.data",
                    [(rule, subject, c.get("true_since_ts"), c.get("clear_since"),
                      orjson.dumps(c.get("last_value")).decode() if c.get("last_value") is not None else None,
                      c.get("last_evidence"), orjson.dumps(c["data"]).decode() if c.get("data") else None)
                     for rule, subject, c in upserts])

    def load_seen(self) -> dict[str, float]:
        with self._read() as db:
            return {r["device_id"]: r["last_seen"] for r in db.execute("SELECT device_id, last_seen FROM device_seen")}

    def save_seen(self, seen: list[tuple[str, float]]) -> None:
        if not seen:
            return
        with self._tx() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO device_seen(device_id, last_seen) VALUES (%s, %s) ON CONFLICT (device_id)"
                " DO UPDATE SET last_seen = GREATEST(device_seen.last_seen, excluded.last_seen)", seen)

    # -- shelves -----------------------------------------------------------------------------------
    def shelve(self, scope: str, target: str, reason: str, by: str, until: float, now_iso: str,
               until_iso: str, *, approved_by: str | None = None, life_safety: bool = False,
               every: str | None = None) -> int:
        with self._tx() as db:
            row = db.execute(
                "INSERT INTO shelves(scope, target, reason, by, created_at, until, until_iso, approved_by, life_safety,"
                " every) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING shelf_id",
                (scope, target, reason, by, now_iso, until, until_iso, approved_by, int(life_safety),
                 every)).fetchone()
        assert row is not None
        return int(row["shelf_id"])

    def unshelve(self, shelf_id: int, by: str, now_iso: str) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE shelves SET ended_at = %s, ended_by = %s WHERE shelf_id = %s"
                             " AND ended_at IS NULL", (now_iso, by, shelf_id))
            return cur.rowcount == 1

    def shelves(self, live_at: float | None = None) -> list[Row]:
        q = "SELECT * FROM shelves"
        args: list[Any] = []
        if live_at is not None:
            q += " WHERE ended_at IS NULL AND until > %s"
            args.append(live_at)
        with self._read() as db:
            rows = db.execute(q + " ORDER BY shelf_id DESC", args).fetchall()
        return [dict(r) for r in rows]

    # -- staff commands, applied once --------------------------------------------------------------
    def command(self, command_id: str) -> tuple[int | None, dict[str, Any] | None] | None:
        with self._read() as db:
            r = db.execute("SELECT status, answer FROM commands WHERE command_id = %s", (command_id,)).fetchone()
        if r is None:
            return None
        return r["status"], orjson.loads(r["answer"]) if r["answer"] else None

    def answered(self, command_id: str, name: str, actor: str | None, at: str, status: int,
                 answer: dict[str, Any]) -> None:
        with self._read() as db:
            db.execute(
                "INSERT INTO commands(command_id, name, actor, at, status, answer) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (command_id) DO UPDATE SET status = excluded.status, answer = excluded.answer",
                (command_id, name, actor, at, status, orjson.dumps(answer).decode()))

    # -- the change feed ---------------------------------------------------------------------------
    def last_seq(self) -> int:
        with self._read() as db:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
        return int(row["seq"]) if row else 0

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[str] | None]:
        with self._read() as db:
            low = db.execute("SELECT MIN(seq) AS seq FROM changes").fetchone()
            rows = db.execute("SELECT seq, alert_id FROM changes WHERE seq > %s ORDER BY seq LIMIT %s",
                              (seq, limit)).fetchall()
        oldest = low["seq"] if low else None
        if not rows:
            return seq, []
        if (oldest is not None and seq < oldest - 1) or len(rows) == limit:
            return int(rows[-1]["seq"]), None
        return int(rows[-1]["seq"]), list(dict.fromkeys(r["alert_id"] for r in rows))

    # -- dispatches --------------------------------------------------------------------------------
    @staticmethod
    def _dispatch_row(db: Conn, dispatch_id: str) -> Row | None:
        r = db.execute("SELECT * FROM dispatches WHERE dispatch_id = %s", (dispatch_id,)).fetchone()
        return _drow(r) if r else None

    def dispatch_insert(self, row: Row, step: StepSpec, by: str, check: Callable[[bool], None]) -> Row:
        cols = list(row)
        event, at, note, data = step
        with self._tx() as db:
            check(db.execute("SELECT 1 FROM archives WHERE alert_id = %s", (row["alert_id"],)).fetchone() is not None)
            db.execute(f"INSERT INTO dispatches({', '.join(cols)}) VALUES ({_in(len(cols))})",
                       [_dispatch_value(c, row[c]) for c in cols])
            self._step(db, row["alert_id"], event, at, by, note, data)
            d = self._dispatch_row(db, row["dispatch_id"])
        assert d is not None
        return d

    def dispatch(self, dispatch_id: str) -> Row | None:
        with self._read() as db:
            return self._dispatch_row(db, dispatch_id)

    def dispatches_for(self, alert_id: str) -> list[Row]:
        with self._read() as db:
            rows = db.execute('SELECT * FROM dispatches WHERE alert_id = %s ORDER BY created_at COLLATE "C", rowid',
                              (alert_id,)).fetchall()
        return [_drow(r) for r in rows]

    def open_dispatches(self, states: Sequence[str], community: str | None = None) -> list[Row]:
        q = ("SELECT d.* FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
             f"WHERE d.state IN ({_in(len(states))})")
        args: list[Any] = list(states)
        if community:
            q += " AND a.community = %s"
            args.append(community)
        with self._read() as db:
            rows = db.execute(q + ' ORDER BY d.deadline COLLATE "C", d.rowid', args).fetchall()
        return [_drow(r) for r in rows]

    def dispatch_advance(self, dispatch_id: str, from_states: Sequence[str], sets: dict[str, Any],
                         check: Callable[[Row | None], None], step: StepSpec, by: str | None,
                         inside: Callable[[], None] | None = None) -> Row:
        event, at, note, data = step
        with self._tx() as db:
            check(self._dispatch_row(db, dispatch_id))
            r = db.execute(
                f"UPDATE dispatches SET {', '.join(f'{k} = %s' for k in sets)} WHERE dispatch_id = %s AND state IN "
                f"({_in(len(from_states))}) RETURNING *",
                [*(_dispatch_value(k, v) for k, v in sets.items()), dispatch_id, *from_states]).fetchone()
            assert r is not None  # check() saw it in one of from_states, under the write lock
            d = _drow(r)
            if by is None:  # the later steps are signed by whoever accepted the dispatch
                took = db.execute(
                    "SELECT actor FROM alert_events WHERE alert_id = %s AND event = %s "
                    "AND data::jsonb ->> 'dispatch_id' = %s ORDER BY seq LIMIT 1",
                    (d["alert_id"], str(Event.ACCEPTED), dispatch_id)).fetchone()
                by = took["actor"] if took else None
            self._step(db, d["alert_id"], event, at, by or d["assignee"], note,
                       {"dispatch_id": dispatch_id, "team": d["team_id"], **(data or {})})
            if inside is not None:
                inside()
        return d

    def dispatch_reopen(self, dispatch_id: str) -> Row | None:
        with self._tx() as db:
            db.execute("UPDATE dispatches SET state = 'accepted' WHERE dispatch_id = %s AND state = 'done'",
                       (dispatch_id,))
            return self._dispatch_row(db, dispatch_id)

    def overdue_dispatches(self, now_iso: str) -> list[Row]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM dispatches WHERE state = 'sent' AND escalated_at IS NULL"
                ' AND deadline COLLATE "C" <= %s', (now_iso,)).fetchall()
        return [_drow(r) for r in rows]

    def dispatch_escalate(self, dispatch_id: str, at: str, note: str, data: dict[str, Any]) -> Row | None:
        with self._tx() as db:
            r = db.execute("UPDATE dispatches SET escalated_at = %s WHERE dispatch_id = %s AND state = 'sent' "
                           "AND escalated_at IS NULL RETURNING *", (at, dispatch_id)).fetchone()
            if r is None:
                return None
            self._step(db, r["alert_id"], Event.ESCALATED, at, None, note, data)
        return _drow(r)

    # -- archives ----------------------------------------------------------------------------------
    def archive_insert(self, alert_id: str, at: str, by: str, cause: str, note: str | None,
                       data: dict[str, Any], open_states: Sequence[str],
                       check: Callable[[str | None, list[tuple[str, str]], str | None], None]) -> None:
        with self._tx() as db:
            row = db.execute("SELECT state FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
            busy = db.execute(f"SELECT team_name, state FROM dispatches WHERE alert_id = %s AND state IN "
                              f"({_in(len(open_states))})", (alert_id, *open_states)).fetchall()
            done = db.execute("SELECT archived_by FROM archives WHERE alert_id = %s", (alert_id,)).fetchone()
            check(row["state"] if row else None, [(r["team_name"], r["state"]) for r in busy],
                  done["archived_by"] if done else None)
            db.execute("INSERT INTO archives(alert_id, archived_at, archived_by, cause, note) "
                       "VALUES (%s, %s, %s, %s, %s)", (alert_id, at, by, cause, note))
            self._step(db, alert_id, Event.ARCHIVED, at, by, note, data)

    def archived(self, alert_id: str) -> Row | None:
        with self._read() as db:
            r = db.execute("SELECT * FROM archives WHERE alert_id = %s", (alert_id,)).fetchone()
        return dict(r) if r else None

    def pending_archive(self, severities: Sequence[str], community: str | None = None,
                        limit: int = 1000) -> list[Alert]:
        q = (f"SELECT a.* FROM alerts a WHERE a.severity IN ({_in(len(severities))}) AND a.state = 'resolved' "
             "AND NOT EXISTS (SELECT 1 FROM archives r WHERE r.alert_id = a.alert_id)")
        args: list[Any] = list(severities)
        if community:
            q += " AND a.community = %s"
            args.append(community)
        q += ' ORDER BY a.started_at COLLATE "C", a.rowid LIMIT %s'
        args.append(limit)
        with self._read() as db:
            rows = db.execute(q, args).fetchall()
        return [_decode(r) for r in rows]

    # -- the period report -------------------------------------------------------------------------
    def report_rows(self, lo: str, hi: str, community: str | None, open_states: Sequence[str]) -> ReportRows:
        q = 'SELECT * FROM alerts WHERE started_at COLLATE "C" >= %s AND started_at COLLATE "C" < %s'
        args: list[Any] = [lo, hi]
        if community:
            q += " AND community = %s"
            args.append(community)
        dq = ("SELECT d.*, a.community AS _c FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
              'WHERE d.created_at COLLATE "C" >= %s AND d.created_at COLLATE "C" < %s'
              f" AND d.state IN ({_in(len(open_states))})")
        dargs: list[Any] = [lo, hi, *open_states]
        if community:
            dq += " AND a.community = %s"
            dargs.append(community)
        period = 'a.started_at COLLATE "C" >= %s AND a.started_at COLLATE "C" < %s'
        # One snapshot for all four reads: writers on other hosts go on meanwhile.
        with self._lock, self._db.transaction():
            db = self._db
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            alerts = [_decode(r) for r in db.execute(q, args).fetchall()]
            firsts = db.execute(
                "SELECT e.alert_id, e.event, MIN(e.at COLLATE \"C\") AS at FROM alert_events e JOIN alerts a "
                f"ON a.alert_id = e.alert_id WHERE {period} AND e.event IN (%s, %s) "
                "GROUP BY e.alert_id, e.event", (lo, hi, str(Event.ACKNOWLEDGED), str(Event.ARRIVED))).fetchall()
            drows = db.execute(dq + ' ORDER BY d.deadline COLLATE "C"', dargs).fetchall()
            overrides = {r["alert_id"]: int(r["n"]) for r in db.execute(
                "SELECT e.alert_id, COUNT(*) AS n FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id "
                f"WHERE {period} AND e.event IN (%s, %s) "
                "AND e.data::jsonb -> 'override' IN ('true'::jsonb, '1'::jsonb) GROUP BY e.alert_id",
                (lo, hi, str(Event.RESOLVED), str(Event.ARCHIVED))).fetchall()}
        return ReportRows(
            alerts, {(r["alert_id"], r["event"]): r["at"] for r in firsts},
            [(_drow({k: v for k, v in r.items() if k != "_c"}), r["_c"]) for r in drows], overrides)
