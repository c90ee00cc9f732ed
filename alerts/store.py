"""The alert store: SQLite under `SC_DATA_DIR/alerts/`, shared by the engine and the dashboard API.

A partial unique index allows one unresolved alert per (rule, subject) across processes, and
updates touch only the fields they own, so an acknowledgement by hand is never overwritten by
the engine's next value update.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson

from core.contract import Alert, AlertState

_FIELDS = list(Alert.__dataclass_fields__)
_JSON_FIELDS = {"value", "threshold", "nearby", "escalation_tier"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS alerts (
    {", ".join(f"{f} TEXT" if f != "alert_id" else "alert_id TEXT PRIMARY KEY" for f in _FIELDS)},
    subject TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts(rule, subject) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_started ON alerts(started_at);
"""


def store_path(data_dir: Path) -> Path:
    return data_dir / "alerts" / "alerts.sqlite"


class AlreadyOpen(Exception):
    """An unresolved alert for this rule and subject exists already."""


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


class AlertStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        # Stores made by an older version lack the newer optional fields.
        have = {r[1] for r in self._db.execute("PRAGMA table_info(alerts)")}
        for f in _FIELDS:
            if f not in have:
                self._db.execute(f"ALTER TABLE alerts ADD COLUMN {f} TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, alert: Alert, subject: str) -> None:
        cols = [*_FIELDS, "subject"]
        vals = [_encode(f, getattr(alert, f)) for f in _FIELDS] + [subject]
        try:
            with self._lock:
                self._db.execute(
                    f"INSERT INTO alerts({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyOpen(f"{alert.rule} on {subject}") from exc

    def update(self, alert_id: str, **changes: Any) -> Alert | None:
        """Set the given fields on an unresolved alert; returns the new row, None if resolved/absent."""
        if not changes:
            return self.get(alert_id)
        sets = ", ".join(f"{k} = ?" for k in changes)
        args = [_encode(k, v) for k, v in changes.items()] + [alert_id]
        with self._lock:
            row = self._db.execute(
                f"UPDATE alerts SET {sets} WHERE alert_id = ? AND state != 'resolved' RETURNING *", args
            ).fetchone()
        return _decode(row) if row else None

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return _decode(row) if row else None

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        """Unresolved alerts keyed by (rule, subject)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM alerts WHERE state != 'resolved'").fetchall()
        return {(r["rule"], r["subject"]): _decode(r) for r in rows}

    def list(
        self, state: str | None = None, community: str | None = None, limit: int = 500
    ) -> list[Alert]:
        q = "SELECT * FROM alerts"
        where, args = [], []
        if state:
            states = [s.strip() for s in state.split(",") if s.strip()]
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if community:
            where.append("community = ?")
            args.append(community)
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [_decode(r) for r in rows]

    def acknowledge(self, alert_id: str, by: str, note: str | None, now: str) -> Alert | None:
        return self.update(
            alert_id, state=str(AlertState.ACKNOWLEDGED), acked_by=by, note=note, updated_at=now
        )

    def resolve(
        self, alert_id: str, now: str, note: str | None = None, by: str | None = None
    ) -> Alert | None:
        changes: dict[str, Any] = {"state": str(AlertState.RESOLVED), "updated_at": now, "resolved_at": now}
        if note is not None:
            changes["note"] = note
        if by is not None:
            changes["acked_by"] = by
        return self.update(alert_id, **changes)
