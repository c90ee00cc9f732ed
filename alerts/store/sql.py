"""The SQL both store backends share: method bodies written once, with `?` placeholders.

`SqlStore` holds every method whose SQL is the same on SQLite and PostgreSQL; a backend supplies
the dialect as small hooks: `_q` (its placeholder), `_tx`/`_read` (a write transaction, a read
connection), `_INTEGRITY` (what a unique index raises), `_drow` (a dispatch row as plain fields),
`_C` (text compared byte by byte) and `_json_text` (a field of a JSON column). Ids come back by
`RETURNING` on both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import orjson

from alerts.store import AlreadyOpen, Row, StepRow, StepSpec, Store
from alerts.timeline import SYSTEM, Event, Step
from core.contract import Alert, AlertState
from core.timebase import epoch

FIELDS = list(Alert.__dataclass_fields__)
_JSON_FIELDS = {"value", "threshold", "nearby", "escalation_tier"}
_DISPATCH_JSON = ("contacts", "photos")
_PATROL_JSON = ("photos",)  # check-ins and hazards: their photos' metadata


def encode(field: str, v: Any) -> Any:
    return orjson.dumps(v).decode() if field in _JSON_FIELDS and v is not None else v


def decode(row: Mapping[str, Any]) -> Alert:
    d = {f: row[f] for f in FIELDS}
    for f in _JSON_FIELDS:
        if d[f] is not None:
            d[f] = orjson.loads(d[f])
    for f in ("lon", "lat"):
        if d[f] is not None:
            d[f] = float(d[f])
    return Alert.from_json(d)


def dispatch(r: Mapping[str, Any]) -> Row:
    d = dict(r)
    for f in _DISPATCH_JSON:
        d[f] = orjson.loads(d[f]) if d.get(f) else []
    return d


def dispatch_value(field: str, v: Any) -> Any:
    return orjson.dumps(v).decode() if field in _DISPATCH_JSON and not isinstance(v, str) else v


def placeholders(n: int) -> str:
    return ", ".join("?" * n)

# The exceptions a backend's unique index raises (sqlite3.IntegrityError, psycopg UniqueViolation).
IntegrityErrors = tuple[type[BaseException], ...]


class SqlStore(Store):
    _INTEGRITY: ClassVar[IntegrityErrors] = ()
    # How ISO times and ids compare: as text, byte by byte (SQLite's default; PostgreSQL says COLLATE "C").
    _C: ClassVar[str] = ""

    @staticmethod
    def _json_text(col: str, key: str) -> str:
        """SQL for the text of `key` in the JSON object in column `col`."""
        return f"json_extract({col}, '$.{key}')"

    # -- the dialect hooks -------------------------------------------------------------------------
    @staticmethod
    def _q(sql: str) -> str:
        """The statement in this backend's placeholder style (written with `?`)."""
        return sql

    def _tx(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    @staticmethod
    def _drow(r: Any) -> Row:
        return dispatch(r)

    def _x(self, db: Any, sql: str, args: Any = ()) -> Any:
        return db.execute(self._q(sql), args)

    # -- the timeline ------------------------------------------------------------------------------
    def _step(self, db: Any, alert_id: str, event: str, at: str, actor: str | None, note: str | None,
              data: dict[str, Any] | None) -> None:
        self._x(db, "INSERT INTO alert_events(alert_id, at, event, actor, note, data) VALUES (?, ?, ?, ?, ?, ?)",
                (alert_id, at, str(event), actor or SYSTEM, note, orjson.dumps(data).decode() if data else None))

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
        with self._read() as db:
            rows = self._x(db, "SELECT * FROM alert_events WHERE alert_id = ? ORDER BY seq", (alert_id,)).fetchall()
        return [Step(r["seq"], r["alert_id"], r["at"], r["event"], r["actor"], r["note"],
                     orjson.loads(r["data"]) if r["data"] else {}) for r in rows]

    # -- alerts ------------------------------------------------------------------------------------
    def insert(self, alert: Alert, subject: str) -> None:
        cols = [*FIELDS, "subject"]
        vals = [encode(f, getattr(alert, f)) for f in FIELDS] + [subject]
        try:
            with self._tx() as db:
                self._x(db, f"INSERT INTO alerts({', '.join(cols)}) VALUES ({placeholders(len(cols))})", vals)
                self._step(db, alert.alert_id, Event.RAISED, alert.started_at, SYSTEM, None,
                           {"severity": alert.severity, "value": alert.value, "message": alert.message})
        except self._INTEGRITY as exc:
            raise AlreadyOpen(f"{alert.rule} on {subject}") from exc

    def update(self, alert_id: str, step: StepSpec | None = None, **changes: Any) -> Alert | None:
        """Set the given fields on an unresolved alert; returns the new row, None if resolved/absent.

        `step` (event, at, note, data) is written to the timeline in the same transaction."""
        if not changes:
            return self.get(alert_id)
        sets = ", ".join(f"{k} = ?" for k in changes)
        args = [encode(k, v) for k, v in changes.items()] + [alert_id]
        with self._tx() as db:
            row = self._x(db, f"UPDATE alerts SET {sets} WHERE alert_id = ? AND state != 'resolved' RETURNING *",
                          args).fetchone()
            if row is not None and step is not None:
                event, at, note, data = step
                self._step(db, alert_id, event, at, SYSTEM, note, data)
        return decode(row) if row else None

    def get(self, alert_id: str) -> Alert | None:
        with self._read() as db:
            row = self._x(db, "SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return decode(row) if row else None

    def _alert_states(self, alert_ids: Sequence[str]) -> dict[str, str]:
        """The state of each of these alerts the store has (what a failover lost is not there)."""
        out: dict[str, str] = {}
        with self._read() as db:
            for i in range(0, len(alert_ids), 500):
                chunk = list(alert_ids[i:i + 500])
                rows = self._x(db, f"SELECT alert_id, state FROM alerts WHERE alert_id IN ({placeholders(len(chunk))})",
                               chunk).fetchall()
                out.update({r["alert_id"]: r["state"] for r in rows})
        return out

    def subject_of(self, alert_id: str) -> str | None:
        with self._read() as db:
            row = self._x(db, "SELECT subject FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return row["subject"] if row else None

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        """Unresolved alerts keyed by (rule, subject)."""
        with self._read() as db:
            rows = self._x(db, "SELECT * FROM alerts WHERE state != 'resolved'").fetchall()
        return {(r["rule"], r["subject"]): decode(r) for r in rows}

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
                where.append(f"{col} IN ({placeholders(len(vals))})")
                args.extend(vals)
        c = self._C
        for cond, val in (("community = ?", community), ("rule = ?", rule), ("device_id = ?", device_id),
                          ("compound_id = ?", compound_id), (f"started_at{c} >= ?", since),
                          (f"started_at{c} <= ?", until), (f"updated_at{c} >= ?", updated_since)):
            if val:
                where.append(cond)
                args.append(val)
        if where:
            q += " WHERE " + " AND ".join(where)
        q += f" ORDER BY started_at{c} DESC, rowid DESC LIMIT ?"
        args.append(limit)
        with self._read() as db:
            rows = self._x(db, q, args).fetchall()
        return [decode(r) for r in rows]

    def acknowledge(self, alert_id: str, by: str, note: str | None, now: str) -> Alert | None:
        """Acknowledge an unresolved alert. The first person stays `acked_by` with their note and time; a
        later acknowledgement adds its step to the timeline and changes nobody's record (the row would
        otherwise pair one person's name with another's note and time)."""
        with self._tx() as db:
            row = self._x(  # SET expressions read the row as it was: acked_by IS NULL = the first
                db, "UPDATE alerts SET state = ?, acked_by = COALESCE(acked_by, ?), "
                "note = CASE WHEN acked_by IS NULL THEN COALESCE(?, note) ELSE note END, "
                "updated_at = CASE WHEN acked_by IS NULL THEN ? ELSE updated_at END "
                "WHERE alert_id = ? AND state != 'resolved' RETURNING *",
                (str(AlertState.ACKNOWLEDGED), by, note or None, now, alert_id),
            ).fetchone()
            if row is not None:
                self._step(db, alert_id, Event.ACKNOWLEDGED, now, by, note, None)
        return decode(row) if row else None

    def resolve(
        self, alert_id: str, now: str, note: str | None = None, by: str | None = None, *,
        data: dict[str, Any] | None = None, watch_s: float | None = None,
    ) -> Alert | None:
        """Resolve an unresolved alert: by a person (`by`) or, with `by` None, because its condition cleared.

        `data` is added to the `resolved` step (an override, the reading it was given against); with
        `watch_s` its (rule, subject) is put under watch that long, in the same transaction."""
        with self._tx() as db:
            row = self._x(
                db, "UPDATE alerts SET state = ?, updated_at = ?, resolved_at = ?, note = COALESCE(?, note), "
                "resolved_by = ? WHERE alert_id = ? AND state != 'resolved' RETURNING *",
                (str(AlertState.RESOLVED), now, now, note or None, by, alert_id),
            ).fetchone()
            if row is not None:
                self._step(db, alert_id, Event.RESOLVED, now, by, note, {"by_hand": by is not None, **(data or {})})
                if watch_s:
                    closed = epoch(now)
                    self._watch(db, row["rule"], row["subject"], alert_id, closed, closed + watch_s)
        return decode(row) if row else None

    # -- the watch after a close, and reopening (migration 0008) -----------------------------------
    def _watch(self, db: Any, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        self._x(db, "INSERT INTO watches(rule, subject, alert_id, closed_at, until) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (rule, subject) DO UPDATE SET alert_id = excluded.alert_id,"
                " closed_at = excluded.closed_at, until = excluded.until", (rule, subject, alert_id, closed, until))

    def set_watch(self, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        with self._tx() as db:
            self._watch(db, rule, subject, alert_id, closed, until)

    def watch_for(self, rule: str, subject: str) -> Row | None:
        """The watch on (rule, subject), live or run out, or None."""
        with self._read() as db:
            r = self._x(db, "SELECT * FROM watches WHERE rule = ? AND subject = ?", (rule, subject)).fetchone()
        return dict(r) if r else None

    def watches(self, live_at: float) -> list[Row]:
        with self._read() as db:
            return [dict(r) for r in self._x(db, "SELECT * FROM watches WHERE until > ?", (live_at,))]

    def condition_of(self, alert_id: str) -> tuple[Alert, str, dict[str, Any] | None] | None:
        """(alert, subject, its condition row as `load_conditions` gives it, or None); None if no such alert."""
        with self._read() as db:
            row = self._x(db, "SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                return None
            c = self._x(db, "SELECT * FROM conditions WHERE rule = ? AND subject = ?",
                        (row["rule"], row["subject"])).fetchone()
        cond = None if c is None else {
            "true_since_ts": c["true_since_ts"], "clear_since": c["clear_since"],
            "last_value": orjson.loads(c["last_value"]) if c["last_value"] is not None else None,
            "last_evidence": c["last_evidence"]}
        return decode(row), row["subject"], cond

    def reopen(self, alert_id: str, now: str, data: dict[str, Any], **changes: Any) -> Alert | None:
        """Bring a resolved alert back to `active` (复燃): its watch ends, `reopened` counts up, a
        `reopened` step is written; None if it is not resolved (or another alert holds its place)."""
        sets = "".join(f", {k} = ?" for k in changes)
        args = [encode(k, v) for k, v in changes.items()]
        try:
            with self._tx() as db:
                row = self._x(
                    db, "UPDATE alerts SET state = ?, resolved_at = NULL, resolved_by = NULL, acked_by = NULL,"
                    " reopened = reopened + 1,"  # back: a new acknowledgement is due (the timeline keeps the first)
                    f" updated_at = ?{sets} WHERE alert_id = ? AND state = 'resolved' RETURNING *",
                    [str(AlertState.ACTIVE), now, *args, alert_id]).fetchone()
                if row is not None:
                    self._x(db, "DELETE FROM watches WHERE alert_id = ?", (alert_id,))
                    self._step(db, alert_id, Event.REOPENED, now, SYSTEM, None, {**data, "reopened": row["reopened"]})
        except self._INTEGRITY:  # a new alert for the same condition is open already
            return None
        return decode(row) if row else None

    # -- condition state (migration 0006): what a restart must not forget -----------------------
    def load_conditions(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._read() as db:
            rows = self._x(db, "SELECT * FROM conditions").fetchall()
        return {(r["rule"], r["subject"]): {
            "true_since_ts": r["true_since_ts"], "clear_since": r["clear_since"],
            "last_value": orjson.loads(r["last_value"]) if r["last_value"] is not None else None,
            "last_evidence": r["last_evidence"], "data": orjson.loads(r["data"]) if r["data"] else {},
        } for r in rows}

    # -- shelving (migrations 0007, 0011) --------------------------------------------------------------
    def shelve(self, scope: str, target: str, reason: str, by: str, until: float, now_iso: str,
               until_iso: str, *, approved_by: str | None = None, life_safety: bool = False,
               every: str | None = None) -> int:
        with self._tx() as db:
            row = self._x(
                db, "INSERT INTO shelves(scope, target, reason, by, created_at, until, until_iso, approved_by,"
                " life_safety, every) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING shelf_id",
                (scope, target, reason, by, now_iso, until, until_iso, approved_by, int(life_safety),
                 every)).fetchone()
        assert row is not None
        return int(row["shelf_id"])

    def unshelve(self, shelf_id: int, by: str, now_iso: str) -> bool:
        with self._tx() as db:
            cur = self._x(db, "UPDATE shelves SET ended_at = ?, ended_by = ? WHERE shelf_id = ?"
                          " AND ended_at IS NULL", (now_iso, by, shelf_id))
            return bool(cur.rowcount == 1)

    def shelves(self, live_at: float | None = None) -> list[Row]:
        """Shelves, newest first; with `live_at`, only those not ended and not expired at that time."""
        q = "SELECT * FROM shelves"
        args: list[Any] = []
        if live_at is not None:
            q += " WHERE ended_at IS NULL AND until > ?"
            args.append(live_at)
        with self._read() as db:
            rows = self._x(db, q + " ORDER BY shelf_id DESC", args).fetchall()
        return [dict(r) for r in rows]

    # -- staff commands (migration 0009): applied once -------------------------------------------
    def command(self, command_id: str) -> tuple[int | None, dict[str, Any] | None] | None:
        """(status, answer) of a command already applied; (None, None) if applied but not answered
        (the service stopped in between); None if never applied."""
        with self._read() as db:
            r = self._x(db, "SELECT status, answer FROM commands WHERE command_id = ?", (command_id,)).fetchone()
        if r is None:
            return None
        return r["status"], orjson.loads(r["answer"]) if r["answer"] else None

    def answered(self, command_id: str, name: str, actor: str | None, at: str, status: int,
                 answer: dict[str, Any]) -> None:
        """Keep a command's answer (a refusal changes nothing, but its answer is kept too)."""
        with self._read() as db:  # one statement, committed by itself
            self._x(db, "INSERT INTO commands(command_id, name, actor, at, status, answer) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (command_id) DO UPDATE SET status = excluded.status, answer = excluded.answer",
                    (command_id, name, actor, at, status, orjson.dumps(answer).decode()))

    # -- notification preferences (migration 0014) -------------------------------------------------
    def preferences(self) -> dict[str, Row]:
        with self._read() as db:
            rows = self._x(db, "SELECT * FROM preferences").fetchall()
        return {r["person"]: {**dict(r), "channels": orjson.loads(r["channels"])} for r in rows}

    def set_preferences(self, person: str, channels: Sequence[str], quiet: str | None, by: str, at: str) -> Row:
        with self._tx() as db:
            self._x(db, "INSERT INTO preferences(person, channels, quiet, updated_by, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (person) DO UPDATE SET channels = excluded.channels,"
                    " quiet = excluded.quiet,"
                    " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                    (person, orjson.dumps(list(channels)).decode(), quiet, by, at))
        return {"person": person, "channels": list(channels), "quiet": quiet, "updated_by": by, "updated_at": at}

    # -- the change feed (migration 0010): every write of an alert row, numbered --------------------
    def last_seq(self) -> int:
        with self._read() as db:
            row = self._x(db, "SELECT COALESCE(MAX(seq), 0) AS seq FROM changes").fetchone()
        return int(row["seq"]) if row else 0

    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[str] | None]:
        """(the newest change number, the ids of alerts written after `seq`, oldest first); the ids are
        None when `seq` is older than the feed keeps (the reader reloads everything)."""
        with self._read() as db:
            low = self._x(db, "SELECT MIN(seq) AS seq FROM changes").fetchone()
            rows = self._x(db, "SELECT seq, alert_id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                           (seq, limit)).fetchall()
        oldest = low["seq"] if low else None
        if not rows:
            return seq, []
        if (oldest is not None and seq < oldest - 1) or len(rows) == limit:
            return int(rows[-1]["seq"]), None
        return int(rows[-1]["seq"]), list(dict.fromkeys(r["alert_id"] for r in rows))

    # -- dispatches (migration 0004; alerts/dispatch.py) ------------------------------------------
    def _dispatch_row(self, db: Any, dispatch_id: str) -> Row | None:
        r = self._x(db, "SELECT * FROM dispatches WHERE dispatch_id = ?", (dispatch_id,)).fetchone()
        return self._drow(r) if r else None

    def dispatch_insert(self, row: Row, step: StepSpec, by: str, check: Callable[[bool], None]) -> Row:
        cols = list(row)
        event, at, note, data = step
        with self._tx() as db:
            check(self._x(db, "SELECT 1 FROM archives WHERE alert_id = ?", (row["alert_id"],)).fetchone() is not None)
            self._x(db, f"INSERT INTO dispatches({', '.join(cols)}) VALUES ({placeholders(len(cols))})",
                    [dispatch_value(c, row[c]) for c in cols])
            self._step(db, row["alert_id"], event, at, by, note, data)
            d = self._dispatch_row(db, row["dispatch_id"])
        assert d is not None
        return d

    def dispatches_for(self, alert_id: str) -> list[Row]:
        with self._read() as db:
            rows = self._x(db, f"SELECT * FROM dispatches WHERE alert_id = ? ORDER BY created_at{self._C}, rowid",
                           (alert_id,)).fetchall()
        return [self._drow(r) for r in rows]

    def dispatch_advance(self, dispatch_id: str, from_states: Sequence[str], sets: dict[str, Any],
                         check: Callable[[Row | None], None], step: StepSpec, by: str | None,
                         inside: Callable[[], None] | None = None) -> Row:
        event, at, note, data = step
        with self._tx() as db:
            check(self._dispatch_row(db, dispatch_id))
            r = self._x(
                db, f"UPDATE dispatches SET {', '.join(f'{k} = ?' for k in sets)} WHERE dispatch_id = ? AND state IN "
                f"({placeholders(len(from_states))}) RETURNING *",
                [*(dispatch_value(k, v) for k, v in sets.items()), dispatch_id, *from_states]).fetchone()
            assert r is not None  # check() saw it in one of from_states, under the write lock
            d = self._drow(r)
            if by is None:  # the later steps are signed by whoever accepted the dispatch
                took = self._x(
                    db, "SELECT actor FROM alert_events WHERE alert_id = ? AND event = ? "
                    f"AND {self._json_text('data', 'dispatch_id')} = ? ORDER BY seq LIMIT 1",
                    (d["alert_id"], str(Event.ACCEPTED), dispatch_id)).fetchone()
                by = took["actor"] if took else None
            self._step(db, d["alert_id"], event, at, by or d["assignee"], note,
                       {"dispatch_id": dispatch_id, "team": d["team_id"], **(data or {})})
            if inside is not None:
                inside()
        return d

    def overdue_dispatches(self, now_iso: str) -> list[Row]:
        with self._read() as db:
            rows = self._x(db, "SELECT * FROM dispatches WHERE state = 'sent' AND escalated_at IS NULL"
                           f" AND deadline{self._C} <= ?", (now_iso,)).fetchall()
        return [self._drow(r) for r in rows]

    def dispatch(self, dispatch_id: str) -> Row | None:
        with self._read() as db:
            return self._dispatch_row(db, dispatch_id)

    def dispatch_reopen(self, dispatch_id: str) -> Row | None:
        with self._tx() as db:
            self._x(db, "UPDATE dispatches SET state = 'accepted' WHERE dispatch_id = ? AND state = 'done'",
                    (dispatch_id,))
            return self._dispatch_row(db, dispatch_id)

    def dispatch_escalate(self, dispatch_id: str, at: str, note: str, data: dict[str, Any]) -> Row | None:
        with self._tx() as db:
            r = self._x(db, "UPDATE dispatches SET escalated_at = ? WHERE dispatch_id = ? AND state = 'sent' "
                        "AND escalated_at IS NULL RETURNING *", (at, dispatch_id)).fetchone()
            if r is None:
                return None
            self._step(db, r["alert_id"], Event.ESCALATED, at, None, note, data)
        return self._drow(r)

    # -- archives (migration 0005; alerts/archive.py) ---------------------------------------------
    def archive_insert(self, alert_id: str, at: str, by: str, cause: str, note: str | None,
                       data: dict[str, Any], open_states: Sequence[str],
                       check: Callable[[str | None, list[tuple[str, str]], str | None], None]) -> None:
        with self._tx() as db:
            row = self._x(db, "SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            busy = self._x(db, f"SELECT team_name, state FROM dispatches WHERE alert_id = ? AND state IN "
                           f"({placeholders(len(open_states))})", (alert_id, *open_states)).fetchall()
            done = self._x(db, "SELECT archived_by FROM archives WHERE alert_id = ?", (alert_id,)).fetchone()
            check(row["state"] if row else None, [(r["team_name"], r["state"]) for r in busy],
                  done["archived_by"] if done else None)
            self._x(db, "INSERT INTO archives(alert_id, archived_at, archived_by, cause, note) VALUES (?, ?, ?, ?, ?)",
                    (alert_id, at, by, cause, note))
            self._step(db, alert_id, Event.ARCHIVED, at, by, note, data)

    def archived(self, alert_id: str) -> Row | None:
        with self._read() as db:
            r = self._x(db, "SELECT * FROM archives WHERE alert_id = ?", (alert_id,)).fetchone()
        return dict(r) if r else None

    def pending_archive(self, severities: Sequence[str], community: str | None = None,
                        limit: int = 1000) -> list[Alert]:
        q = (f"SELECT a.* FROM alerts a WHERE a.severity IN ({placeholders(len(severities))}) AND a.state = 'resolved' "
             "AND NOT EXISTS (SELECT 1 FROM archives r WHERE r.alert_id = a.alert_id)")
        args: list[Any] = list(severities)
        if community:
            q += " AND a.community = ?"
            args.append(community)
        q += f" ORDER BY a.started_at{self._C}, a.rowid LIMIT ?"
        args.append(limit)
        with self._read() as db:
            rows = self._x(db, q, args).fetchall()
        return [decode(r) for r in rows]

    # -- leases ---------------------------------------------------------------------------------------

    def _clock(self, db: Any) -> float:
        """Now, in epoch seconds, on the clock every holder of a lease is judged by (see PostgresStore)."""
        return time.time()

    def lease(self, name: str, holder: str, ttl_s: float) -> int | None:
        with self._tx() as db:
            now = self._clock(db)
            r = self._x(db, "SELECT holder, expires, epoch FROM leases WHERE name = ?", (name,)).fetchone()
            if r is None:
                self._x(db, "INSERT INTO leases (name, holder, expires, epoch) VALUES (?, ?, ?, 1)",
                        (name, holder, now + ttl_s))
                return 1
            epoch = int(r["epoch"])
            if r["holder"] != holder:
                if float(r["expires"]) > now:
                    return None
                epoch += 1  # run out: it changes hands
            self._x(db, "UPDATE leases SET holder = ?, expires = ?, epoch = ? WHERE name = ?",
                    (holder, now + ttl_s, epoch, name))
            return epoch

    def release_lease(self, name: str, holder: str) -> bool:
        with self._tx() as db:
            return bool(self._x(db, "UPDATE leases SET expires = 0 WHERE name = ? AND holder = ?",
                                (name, holder)).rowcount)

    def leases(self) -> list[Row]:
        with self._read() as db:
            now = self._clock(db)
            rows = [dict(r) for r in self._x(db, "SELECT name, holder, expires, epoch FROM leases ORDER BY name")]
        return [{**r, "expires": float(r["expires"]), "epoch": int(r["epoch"]), "now": now} for r in rows]

    # -- patrols and hazards (migration 0013; alerts/patrols.py) ----------------------------------
    @staticmethod
    def _prow(r: Mapping[str, Any]) -> Row:
        d = dict(r)
        d["photos"] = orjson.loads(d["photos"]) if d.get("photos") else []
        return d

    def _insert(self, db: Any, table: str, row: Row) -> None:
        cols = list(row)
        self._x(db, f"INSERT INTO {table}({', '.join(cols)}) VALUES ({placeholders(len(cols))})",
                [orjson.dumps(row[c]).decode() if c in _PATROL_JSON else row[c] for c in cols])

    def checkin_insert(self, row: Row, hazard: Row | None = None) -> None:
        with self._tx() as db:
            self._insert(db, "patrol_checkins", row)
            if hazard is not None:
                self._insert(db, "hazards", hazard)

    def checkins(self, since: str, until: str | None = None, plan_id: str | None = None) -> list[Row]:
        c = self._C
        q, args = f"SELECT * FROM patrol_checkins WHERE at{c} >= ?", [since]
        if until is not None:
            q += f" AND at{c} < ?"
            args.append(until)
        if plan_id is not None:
            q += " AND plan_id = ?"
            args.append(plan_id)
        with self._read() as db:
            rows = self._x(db, q + f" ORDER BY at{c}, checkin_id{c}", args).fetchall()
        return [self._prow(r) for r in rows]

    def hazard(self, hazard_id: str) -> Row | None:
        with self._read() as db:
            r = self._x(db, "SELECT * FROM hazards WHERE hazard_id = ?", (hazard_id,)).fetchone()
        return self._prow(r) if r else None

    def hazards(self, states: Sequence[str] | None = None, community: str | None = None,
                found_before: str | None = None, limit: int = 1000) -> list[Row]:
        c = self._C
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({placeholders(len(states))})")
            args.extend(states)
        if community:
            where.append("community = ?")
            args.append(community)
        if found_before:
            where.append(f"found_at{c} < ?")
            args.append(found_before)
        q = "SELECT * FROM hazards" + (" WHERE " + " AND ".join(where) if where else "")
        with self._read() as db:
            rows = self._x(db, q + f" ORDER BY deadline{c}, hazard_id{c} LIMIT ?", [*args, limit]).fetchall()
        return [self._prow(r) for r in rows]

    def hazard_advance(self, hazard_id: str, from_states: Sequence[str], sets: dict[str, Any]) -> Row | None:
        with self._tx() as db:
            r = self._x(db, "SELECT * FROM hazards WHERE hazard_id = ? AND state IN "
                        f"({placeholders(len(from_states))})", (hazard_id, *from_states)).fetchone()
            if r is None:
                return None
            sets = dict(sets)
            if "photos" in sets:  # added to those taken before (when found, when rectified)
                sets["photos"] = orjson.dumps(self._prow(r)["photos"] + list(sets["photos"])).decode()
            r = self._x(db, f"UPDATE hazards SET {', '.join(f'{k} = ?' for k in sets)} WHERE hazard_id = ? RETURNING *",
                        [*sets.values(), hazard_id]).fetchone()
        return self._prow(r) if r else None
