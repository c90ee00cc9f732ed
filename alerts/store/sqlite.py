"""The SQLite backend of the alert store: one file under `SC_DATA_DIR/alerts/`, WAL, shared by processes.

A partial unique index allows one unresolved alert per (rule, subject) across processes, and
updates touch only the fields they own, so an acknowledgement by hand is never overwritten by
the engine's next value update. Every state change writes its step to the append-only timeline
(`alerts/timeline.py`) in the same transaction (BEGIN IMMEDIATE). The schema moves by numbered
migrations (`alerts/migrations/`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from alerts.migrations import migrate
from alerts.store import COMMAND, AlreadyOpen, ReportRows, Row, StepRow, StepSpec, Store
from alerts.timeline import SYSTEM, Event, Step
from core.contract import Alert, AlertState
from core.timebase import epoch

_FIELDS = list(Alert.__dataclass_fields__)
_JSON_FIELDS = {"value", "threshold", "nearby", "escalation_tier"}
_DISPATCH_JSON = ("contacts", "photos")


def _encode(field: str, v: Any) -> Any:
    return orjson.dumps(v).decode() if field in _JSON_FIELDS and v is not None else v


def _decode(row: sqlite3.Row) -> Alert:
    d = {f: row[f] for f in _FIELDS}
    for f in _JSON_FIELDS:
        if d[f] is not None:
            d[f] = orjson.loads(d[f])
    for f in ("lon", "lat"):
        if d[f] is not None:
            d[f] = float(d[f])
    return Alert.from_json(d)


def _dispatch(r: sqlite3.Row | Mapping[str, Any]) -> Row:
    d = dict(r)
    for f in _DISPATCH_JSON:
        d[f] = orjson.loads(d[f]) if d.get(f) else []
    return d


def _dispatch_value(field: str, v: Any) -> Any:
    return orjson.dumps(v).decode() if field in _DISPATCH_JSON and not isinstance(v, str) else v


def _in(n: int) -> str:
    return ", ".join("?" * n)


class AlertStore(Store):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        migrate(self._db)
        os.chmod(path, 0o600)  # names, notes and phone numbers of staff

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- a store opened on a full disk (alerts/holdover.py) -----------------------------------------
    def open_frozen(self, path: Path) -> None:
        """Open this store (in place of `__init__`) on the file as it is on disk, read only (SQLite
        `immutable`: no WAL, no room needed), or empty in memory if there is no file yet; every
        write then fails."""
        self._lock = threading.Lock()
        if path.exists():
            db = sqlite3.connect(f"file:{path}?immutable=1", uri=True, check_same_thread=False,
                                 isolation_level=None)
        else:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            migrate(db)
        db.row_factory = sqlite3.Row
        self._db = db

    def adopt(self, other: AlertStore) -> None:
        """Go on with `other`'s connection (the file opened for writing once there is room)."""
        with self._lock:
            old, self._db = self._db, other._db
        old.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: other processes wait, none is lost)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cmd = COMMAND.get()
                if cmd is not None:
                    self._db.execute("INSERT OR IGNORE INTO commands(command_id, name, actor, at) VALUES (?, ?, ?, ?)",
                                     cmd)
                yield self._db
                self._db.execute("COMMIT")  # on a full disk the COMMIT is what fails: rolled back too
            except BaseException:
                # SQLite may have rolled back already (SQLITE_FULL): then ROLLBACK fails harmlessly.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    @staticmethod
    def _step(db: sqlite3.Connection, alert_id: str, event: str, at: str, actor: str | None, note: str | None,
              data: dict[str, Any] | None) -> None:
        db.execute(
            "INSERT INTO alert_events(alert_id, at, event, actor, note, data) VALUES (?, ?, ?, ?, ?, ?)",
            (alert_id, at, str(event), actor or SYSTEM, note, orjson.dumps(data).decode() if data else None),
        )

    def record(self, alert_id: str, event: str, at: str, *, by: str | None = None, note: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        """Append one step to an alert's timeline (for steps that change no alert field)."""
        with self._tx() as db:
            self._step(db, alert_id, event, at, by, note, data)

    def record_many(self, steps: list[StepRow]) -> None:
        """Append several steps, (alert_id, event, at, by, note, data) each, in one transaction."""
        if not steps:
            return
        with self._tx() as db:
            for alert_id, event, at, by, note, data in steps:
                self._step(db, alert_id, event, at, by, note, data)

    def timeline(self, alert_id: str) -> list[Step]:
        """Every step of one alert, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM alert_events WHERE alert_id = ? ORDER BY seq", (alert_id,)).fetchall()
        return [Step(r["seq"], r["alert_id"], r["at"], r["event"], r["actor"], r["note"],
                     orjson.loads(r["data"]) if r["data"] else {}) for r in rows]

    def insert(self, alert: Alert, subject: str) -> None:
        cols = [*_FIELDS, "subject"]
        vals = [_encode(f, getattr(alert, f)) for f in _FIELDS] + [subject]
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO alerts({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
                self._step(db, alert.alert_id, Event.RAISED, alert.started_at, SYSTEM, None,
                           {"severity": alert.severity, "value": alert.value, "message": alert.message})
        except sqlite3.IntegrityError as exc:
            raise AlreadyOpen(f"{alert.rule} on {subject}") from exc

    def update(self, alert_id: str, step: StepSpec | None = None, **changes: Any) -> Alert | None:
        """Set the given fields on an unresolved alert; returns the new row, None if resolved/absent.

        `step` (event, at, note, data) is written to the timeline in the same transaction."""
        if not changes:
            return self.get(alert_id)
        sets = ", ".join(f"{k} = ?" for k in changes)
        args = [_encode(k, v) for k, v in changes.items()] + [alert_id]
        with self._tx() as db:
            row = db.execute(
                f"UPDATE alerts SET {sets} WHERE alert_id = ? AND state != 'resolved' RETURNING *", args
            ).fetchone()
            if row is not None and step is not None:
                event, at, note, data = step
                self._step(db, alert_id, event, at, SYSTEM, note, data)
        return _decode(row) if row else None

    # -- condition state (migration 0006): what a restart must not forget -----------------------
    def load_conditions(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM conditions").fetchall()
        return {(r["rule"], r["subject"]): {
            "true_since_ts": r["true_since_ts"], "clear_since": r["clear_since"],
            "last_value": orjson.loads(r["last_value"]) if r["last_value"] is not None else None,
            "last_evidence": r["last_evidence"], "data": orjson.loads(r["data"]) if r["data"] else {},
        } for r in rows}

    def save_conditions(self, upserts: list[tuple[str, str, dict[str, Any]]],
                        deletes: list[tuple[str, str]]) -> None:
        """Write the conditions that changed since the last save, in one transaction."""
        if not upserts and not deletes:
            return
        with self._tx() as db:
            db.executemany("DELETE FROM conditions WHERE rule = ? AND subject = ?", deletes)
            db.executemany(
                "INSERT INTO conditions(rule, subject, true_since_ts, clear_since, last_value, last_evidence, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(rule, subject) DO UPDATE SET"
                " true_since_ts = excluded.true_since_ts, clear_since = excluded.clear_since,"
                " last_value = excluded.last_value, last_evidence = excluded.last_evidence, data = excluded.data",
                [(rule, subject, c.get("true_since_ts"), c.get("clear_since"),
                  orjson.dumps(c.get("last_value")).decode() if c.get("last_value") is not None else None,
                  c.get("last_evidence"), orjson.dumps(c["data"]).decode() if c.get("data") else None)
                 for rule, subject, c in upserts])

    def load_seen(self) -> dict[str, float]:
        with self._lock:
            return dict(self._db.execute("SELECT device_id, last_seen FROM device_seen").fetchall())

    def save_seen(self, seen: list[tuple[str, float]]) -> None:
        if not seen:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO device_seen(device_id, last_seen) VALUES (?, ?) ON CONFLICT(device_id)"
                " DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)", seen)

    # -- shelving (migrations 0007, 0011) --------------------------------------------------------------
    def shelve(self, scope: str, target: str, reason: str, by: str, until: float, now_iso: str,
               until_iso: str, *, approved_by: str | None = None, life_safety: bool = False,
               every: str | None = None) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO shelves(scope, target, reason, by, created_at, until, until_iso, approved_by, life_safety,"
                " every) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (scope, target, reason, by, now_iso, until, until_iso, approved_by, int(life_safety), every))
            return int(cur.lastrowid or 0)

    def unshelve(self, shelf_id: int, by: str, now_iso: str) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE shelves SET ended_at = ?, ended_by = ? WHERE shelf_id = ? AND ended_at IS NULL",
                             (now_iso, by, shelf_id))
            return cur.rowcount == 1

    def shelves(self, live_at: float | None = None) -> list[dict[str, Any]]:
        """Shelves, newest first; with `live_at`, only those not ended and not expired at that time."""
        q = "SELECT * FROM shelves"
        args: list[Any] = []
        if live_at is not None:
            q += " WHERE ended_at IS NULL AND until > ?"
            args.append(live_at)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY shelf_id DESC", args).fetchall()
        return [dict(r) for r in rows]

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return _decode(row) if row else None

    def subject_of(self, alert_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT subject FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return row["subject"] if row else None

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        """Unresolved alerts keyed by (rule, subject)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM alerts WHERE state != 'resolved'").fetchall()
        return {(r["rule"], r["subject"]): _decode(r) for r in rows}

    def list(
        self, state: str | None = None, community: str | None = None, limit: int = 500, *,
        severity: str | None = None, rule: str | None = None, device_id: str | None = None,
        compound_id: str | None = None, since: str | None = None, until: str | None = None,
        updated_since: str | None = None,
    ) -> list[Alert]:
        """Newest first. `state`/`severity` take comma lists; `since`/`until` bound `started_at`
        (ISO-8601 UTC, compared as text), `updated_since` bounds `updated_at`."""
        q = "SELECT * FROM alerts"
        where: list[str] = []
        args: list[Any] = []
        for col, raw in (("state", state), ("severity", severity)):
            if raw:
                vals = [s.strip() for s in raw.split(",") if s.strip()]
                where.append(f"{col} IN ({', '.join('?' * len(vals))})")
                args.extend(vals)
        for cond, val in (("community = ?", community), ("rule = ?", rule), ("device_id = ?", device_id),
                          ("compound_id = ?", compound_id), ("started_at >= ?", since),
                          ("started_at <= ?", until), ("updated_at >= ?", updated_since)):
            if val:
                where.append(cond)
                args.append(val)
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [_decode(r) for r in rows]

    def acknowledge(self, alert_id: str, by: str, note: str | None, now: str) -> Alert | None:
        """Acknowledge an unresolved alert. The first person stays `acked_by` with their note and time; a
        later acknowledgement adds its step to the timeline and changes nobody's record (the row would
        otherwise pair one person's name with another's note and time)."""
        with self._tx() as db:
            row = db.execute(  # SET expressions read the row as it was: acked_by IS NULL = the first
                "UPDATE alerts SET state = ?, acked_by = COALESCE(acked_by, ?), "
                "note = CASE WHEN acked_by IS NULL THEN COALESCE(?, note) ELSE note END, "
                "updated_at = CASE WHEN acked_by IS NULL THEN ? ELSE updated_at END "
                "WHERE alert_id = ? AND state != 'resolved' RETURNING *",
                (str(AlertState.ACKNOWLEDGED), by, note or None, now, alert_id),
            ).fetchone()
            if row is not None:
                self._step(db, alert_id, Event.ACKNOWLEDGED, now, by, note, None)
        return _decode(row) if row else None

    def resolve(
        self, alert_id: str, now: str, note: str | None = None, by: str | None = None, *,
        data: dict[str, Any] | None = None, watch_s: float | None = None,
    ) -> Alert | None:
        """Resolve an unresolved alert: by a person (`by`) or, with `by` None, because its condition cleared.

        `data` is added to the `resolved` step (an override, the reading it was given against); with
        `watch_s` its (rule, subject) is put under watch that long, in the same transaction."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE alerts SET state = ?, updated_at = ?, resolved_at = ?, note = COALESCE(?, note), "
                "resolved_by = ? WHERE alert_id = ? AND state != 'resolved' RETURNING *",
                (str(AlertState.RESOLVED), now, now, note or None, by, alert_id),
            ).fetchone()
            if row is not None:
                self._step(db, alert_id, Event.RESOLVED, now, by, note, {"by_hand": by is not None, **(data or {})})
                if watch_s:
                    closed = epoch(now)
                    self._watch(db, row["rule"], row["subject"], alert_id, closed, closed + watch_s)
        return _decode(row) if row else None

    # -- the watch after a close, and reopening (migration 0008) -----------------------------------
    @staticmethod
    def _watch(db: sqlite3.Connection, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        db.execute("INSERT INTO watches(rule, subject, alert_id, closed_at, until) VALUES (?, ?, ?, ?, ?)"
                   " ON CONFLICT(rule, subject) DO UPDATE SET alert_id = excluded.alert_id,"
                   " closed_at = excluded.closed_at, until = excluded.until", (rule, subject, alert_id, closed, until))

    def set_watch(self, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        with self._tx() as db:
            self._watch(db, rule, subject, alert_id, closed, until)

    def watch_for(self, rule: str, subject: str) -> dict[str, Any] | None:
        """The watch on (rule, subject), live or run out, or None."""
        with self._lock:
            r = self._db.execute("SELECT * FROM watches WHERE rule = ? AND subject = ?", (rule, subject)).fetchone()
        return dict(r) if r else None

    def watches(self, live_at: float) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM watches WHERE until > ?", (live_at,))]

    def condition_of(self, alert_id: str) -> tuple[Alert, str, dict[str, Any] | None] | None:
        """(alert, subject, its condition row as `load_conditions` gives it, or None); None if no such alert."""
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                return None
            c = self._db.execute("SELECT * FROM conditions WHERE rule = ? AND subject = ?",
                                 (row["rule"], row["subject"])).fetchone()
        cond = None if c is None else {
            "true_since_ts": c["true_since_ts"], "clear_since": c["clear_since"],
            "last_value": orjson.loads(c["last_value"]) if c["last_value"] is not None else None,
            "last_evidence": c["last_evidence"]}
        return _decode(row), row["subject"], cond

    def reopen(self, alert_id: str, now: str, data: dict[str, Any], **changes: Any) -> Alert | None:
        """Bring a resolved alert back to `active` (复燃): its watch ends, `reopened` counts up, a
        `reopened` step is written; None if it is not resolved (or another alert holds its place)."""
        sets = "".join(f", {k} = ?" for k in changes)
        args = [_encode(k, v) for k, v in changes.items()]
        try:
            with self._tx() as db:
                row = db.execute(
                    "UPDATE alerts SET state = ?, resolved_at = NULL, resolved_by = NULL, acked_by = NULL,"
                    " reopened = reopened + 1,"  # back: a new acknowledgement is due (the timeline keeps the first)
                    f" updated_at = ?{sets} WHERE alert_id = ? AND state = 'resolved' RETURNING *",
                    [str(AlertState.ACTIVE), now, *args, alert_id]).fetchone()
                if row is not None:
                    db.execute("DELETE FROM watches WHERE alert_id = ?", (alert_id,))
                    self._step(db, alert_id, Event.REOPENED, now, SYSTEM, None, {**data, "reopened": row["reopened"]})
        except sqlite3.IntegrityError:  # a new alert for the same condition is open already
            return None
        return _decode(row) if row else None

    # -- staff commands (migration 0009): applied once -------------------------------------------
    def command(self, command_id: str) -> tuple[int | None, dict[str, Any] | None] | None:
        """(status, answer) of a command already applied; (None, None) if applied but not answered
        (the service stopped in between); None if never applied."""
        with self._lock:
            r = self._db.execute("SELECT status, answer FROM commands WHERE command_id = ?", (command_id,)).fetchone()
        if r is None:
            return None
        return r["status"], orjson.loads(r["answer"]) if r["answer"] else None

    def answered(self, command_id: str, name: str, actor: str | None, at: str, status: int,
                 answer: dict[str, Any]) -> None:
        """Keep a command's answer (a refusal changes nothing, but its answer is kept too)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO commands(command_id, name, actor, at, status, answer) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(command_id) DO UPDATE SET status = excluded.status, answer = excluded.answer",
                (command_id, name, actor, at, status, orjson.dumps(answer).decode()))

    # -- the change feed (migration 0010): every write of an alert row, numbered --------------------
    def last_seq(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[str] | None]:
        """(the newest change number, the ids of alerts written after `seq`, oldest first); the ids are
        None when `seq` is older than the feed keeps (the reader reloads everything)."""
        with self._lock:
            oldest = self._db.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
            rows = self._db.execute("SELECT seq, alert_id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (seq, limit)).fetchall()
        if not rows:
            return seq, []
        if (oldest is not None and seq < oldest - 1) or len(rows) == limit:
            return int(rows[-1]["seq"]), None
        return int(rows[-1]["seq"]), list(dict.fromkeys(r["alert_id"] for r in rows))


    # -- dispatches (migration 0004; alerts/dispatch.py) ------------------------------------------
    @staticmethod
    def _dispatch_row(db: sqlite3.Connection, dispatch_id: str) -> Row | None:
        r = db.execute("SELECT * FROM dispatches WHERE dispatch_id = ?", (dispatch_id,)).fetchone()
        return _dispatch(r) if r else None

    def dispatch_insert(self, row: Row, step: StepSpec, by: str, check: Callable[[bool], None]) -> Row:
        cols = list(row)
        event, at, note, data = step
        with self._tx() as db:
            check(db.execute("SELECT 1 FROM archives WHERE alert_id = ?", (row["alert_id"],)).fetchone() is not None)
            db.execute(f"INSERT INTO dispatches({', '.join(cols)}) VALUES ({_in(len(cols))})",
                       [_dispatch_value(c, row[c]) for c in cols])
            self._step(db, row["alert_id"], event, at, by, note, data)
            d = self._dispatch_row(db, row["dispatch_id"])
        assert d is not None
        return d

    def dispatch(self, dispatch_id: str) -> Row | None:
        with self._lock:
            return self._dispatch_row(self._db, dispatch_id)

    def dispatches_for(self, alert_id: str) -> list[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM dispatches WHERE alert_id = ? ORDER BY created_at, rowid", (alert_id,)).fetchall()
        return [_dispatch(r) for r in rows]

    def open_dispatches(self, states: Sequence[str], community: str | None = None) -> list[Row]:
        q = ("SELECT d.* FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
             f"WHERE d.state IN ({_in(len(states))})")
        args: list[Any] = list(states)
        if community:
            q += " AND a.community = ?"
            args.append(community)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY d.deadline", args).fetchall()
        return [_dispatch(r) for r in rows]

    def dispatch_advance(self, dispatch_id: str, from_states: Sequence[str], sets: dict[str, Any],
                         check: Callable[[Row | None], None], step: StepSpec, by: str | None,
                         inside: Callable[[], None] | None = None) -> Row:
        event, at, note, data = step
        with self._tx() as db:
            check(self._dispatch_row(db, dispatch_id))
            r = db.execute(
                f"UPDATE dispatches SET {', '.join(f'{k} = ?' for k in sets)} WHERE dispatch_id = ? AND state IN "
                f"({_in(len(from_states))}) RETURNING *",
                [*(_dispatch_value(k, v) for k, v in sets.items()), dispatch_id, *from_states]).fetchone()
            d = _dispatch(r)
            if by is None:  # the later steps are signed by whoever accepted the dispatch
                took = db.execute(
                    "SELECT actor FROM alert_events WHERE alert_id = ? AND event = ? "
                    "AND json_extract(data, '$.dispatch_id') = ? ORDER BY seq LIMIT 1",
                    (d["alert_id"], str(Event.ACCEPTED), dispatch_id)).fetchone()
                by = took["actor"] if took else None
            self._step(db, d["alert_id"], event, at, by or d["assignee"], note,
                       {"dispatch_id": dispatch_id, "team": d["team_id"], **(data or {})})
            if inside is not None:
                inside()
        return d

    def dispatch_reopen(self, dispatch_id: str) -> Row | None:
        with self._tx() as db:
            db.execute("UPDATE dispatches SET state = 'accepted' WHERE dispatch_id = ? AND state = 'done'",
                       (dispatch_id,))
            return self._dispatch_row(db, dispatch_id)

    def overdue_dispatches(self, now_iso: str) -> list[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM dispatches WHERE state = 'sent' AND escalated_at IS NULL AND deadline <= ?",
                (now_iso,)).fetchall()
        return [_dispatch(r) for r in rows]

    def dispatch_escalate(self, dispatch_id: str, at: str, note: str, data: dict[str, Any]) -> Row | None:
        with self._tx() as db:
            r = db.execute("UPDATE dispatches SET escalated_at = ? WHERE dispatch_id = ? AND state = 'sent' "
                           "AND escalated_at IS NULL RETURNING *", (at, dispatch_id)).fetchone()
            if r is None:
                return None
            self._step(db, r["alert_id"], Event.ESCALATED, at, None, note, data)
        return _dispatch(r)

    # -- archives (migration 0005; alerts/archive.py) ---------------------------------------------
    def archive_insert(self, alert_id: str, at: str, by: str, cause: str, note: str | None,
                       data: dict[str, Any], open_states: Sequence[str],
                       check: Callable[[str | None, list[tuple[str, str]], str | None], None]) -> None:
        with self._tx() as db:
            row = db.execute("SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            busy = db.execute(f"SELECT team_name, state FROM dispatches WHERE alert_id = ? AND state IN "
                              f"({_in(len(open_states))})", (alert_id, *open_states)).fetchall()
            done = db.execute("SELECT archived_by FROM archives WHERE alert_id = ?", (alert_id,)).fetchone()
            check(row["state"] if row else None, [(r["team_name"], r["state"]) for r in busy],
                  done["archived_by"] if done else None)
            db.execute("INSERT INTO archives(alert_id, archived_at, archived_by, cause, note) VALUES (?,?,?,?,?)",
                       (alert_id, at, by, cause, note))
            self._step(db, alert_id, Event.ARCHIVED, at, by, note, data)

    def archived(self, alert_id: str) -> Row | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM archives WHERE alert_id = ?", (alert_id,)).fetchone()
        return dict(r) if r else None

    def pending_archive(self, severities: Sequence[str], community: str | None = None,
                        limit: int = 1000) -> list[Alert]:
        q = (f"SELECT a.* FROM alerts a WHERE a.severity IN ({_in(len(severities))}) AND a.state = 'resolved' "
             "AND NOT EXISTS (SELECT 1 FROM archives r WHERE r.alert_id = a.alert_id)")
        args: list[Any] = list(severities)
        if community:
            q += " AND a.community = ?"
            args.append(community)
        q += " ORDER BY a.started_at, a.rowid LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [_decode(r) for r in rows]

    # -- the period report (alerts/report.py) ------------------------------------------------------
    def report_rows(self, lo: str, hi: str, community: str | None, open_states: Sequence[str]) -> ReportRows:
        q = "SELECT * FROM alerts WHERE started_at >= ? AND started_at < ?"
        args: list[Any] = [lo, hi]
        if community:
            q += " AND community = ?"
            args.append(community)
        dq = ("SELECT d.*, a.community AS _c FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
              f"WHERE d.created_at >= ? AND d.created_at < ? AND d.state IN ({_in(len(open_states))})")
        dargs: list[Any] = [lo, hi, *open_states]
        if community:
            dq += " AND a.community = ?"
            dargs.append(community)
        with self._lock:  # as the report has always read them: one after another on one connection
            alerts = [_decode(r) for r in self._db.execute(q, args).fetchall()]
            firsts = self._db.execute(
                "SELECT e.alert_id, e.event, MIN(e.at) AS at FROM alert_events e JOIN alerts a "
                "ON a.alert_id = e.alert_id WHERE a.started_at >= ? AND a.started_at < ? AND e.event IN (?, ?) "
                "GROUP BY e.alert_id, e.event", (lo, hi, str(Event.ACKNOWLEDGED), str(Event.ARRIVED))).fetchall()
            drows = self._db.execute(dq + " ORDER BY d.deadline", dargs).fetchall()
            overrides = dict(self._db.execute(
                "SELECT e.alert_id, COUNT(*) FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id "
                "WHERE a.started_at >= ? AND a.started_at < ? AND e.event IN (?, ?) "
                "AND json_extract(e.data, '$.override') = 1 GROUP BY e.alert_id",
                (lo, hi, str(Event.RESOLVED), str(Event.ARCHIVED))).fetchall())
        return ReportRows(
            alerts, {(r["alert_id"], r["event"]): r["at"] for r in firsts},
            [(_dispatch({k: v for k, v in dict(r).items() if k != "_c"}), r["_c"]) for r in drows], overrides)
