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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from alerts.migrations import migrate
from alerts.store import COMMAND, ReportRows, Row
from alerts.store.sql import SqlStore, decode, dispatch, placeholders
from alerts.timeline import Event


class AlertStore(SqlStore):
    _INTEGRITY = (sqlite3.IntegrityError,)

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
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

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

    # -- condition state (migration 0006): what a restart must not forget -----------------------

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

    # -- dispatches (migration 0004; alerts/dispatch.py) ------------------------------------------

    def open_dispatches(self, states: Sequence[str], community: str | None = None) -> list[Row]:
        q = ("SELECT d.* FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
             f"WHERE d.state IN ({placeholders(len(states))})")
        args: list[Any] = list(states)
        if community:
            q += " AND a.community = ?"
            args.append(community)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY d.deadline", args).fetchall()
        return [dispatch(r) for r in rows]

    # -- the period report (alerts/report.py) ------------------------------------------------------
    def report_rows(self, lo: str, hi: str, community: str | None, open_states: Sequence[str]) -> ReportRows:
        q = "SELECT * FROM alerts WHERE started_at >= ? AND started_at < ?"
        args: list[Any] = [lo, hi]
        if community:
            q += " AND community = ?"
            args.append(community)
        dq = ("SELECT d.*, a.community AS _c FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
              f"WHERE d.created_at >= ? AND d.created_at < ? AND d.state IN ({placeholders(len(open_states))})")
        dargs: list[Any] = [lo, hi, *open_states]
        if community:
            dq += " AND a.community = ?"
            dargs.append(community)
        with self._lock:  # as the report has always read them: one after another on one connection
            alerts = [decode(r) for r in self._db.execute(q, args).fetchall()]
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
            [(dispatch({k: v for k, v in dict(r).items() if k != "_c"}), r["_c"]) for r in drows], overrides)
