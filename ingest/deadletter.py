"""The dead-letter store: every rejected message with topic, payload, reason and time.

SQLite under `SC_DATA_DIR/deadletter/`, bounded to `SC_DEADLETTER_MAX` rows: past that the
oldest rows are dropped first and counted, so an operator sees that something was dropped.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from core.timebase import iso_ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deadletter_reason ON deadletter(reason);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class DeadLetter(NamedTuple):  # a tuple: built per rejected message on the network thread
    topic: str
    payload: bytes
    reason: str
    detail: str
    received_ms: int


def store_path(data_dir: Path) -> Path:
    return data_dir / "deadletter" / "deadletter.sqlite"


class DeadLetterStore:
    def __init__(self, path: Path, max_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_many(self, letters: Iterable[DeadLetter]) -> int:
        rows = [
            (iso_ms(d.received_ms), d.topic, d.payload, d.reason, d.detail) for d in letters
        ]
        if not rows:
            return 0
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO deadletter(received_at, topic, payload, reason, detail) VALUES (?,?,?,?,?)",
                rows,
            )
            # Ids only grow and the oldest go first, so the newest max_rows are those above
            # max(id) - max_rows: an index range delete, not a count(*) over the table per batch.
            (top,) = self._db.execute("SELECT max(id) FROM deadletter").fetchone()
            excess = self._db.execute(
                "DELETE FROM deadletter WHERE id <= ?", (int(top) - self.max_rows,)
            ).rowcount
            if excess > 0:
                self._db.execute(
                    "INSERT INTO counters(name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (excess,),
                )
        return len(rows)

    def dropped(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        return int(row[0]) if row else 0

    def list(self, limit: int | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT received_at, topic, payload, reason, detail FROM deadletter"
        args: list[Any] = []
        if reason:
            q += " WHERE reason = ?"
            args.append(reason)
        q += " ORDER BY id DESC"
        if limit:
            q += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        out = []
        for received_at, topic, payload, reason_, detail in rows:
            raw = bytes(payload)
            item: dict[str, Any] = {
                "topic": topic,
                "payload": raw.decode("utf-8", errors="replace"),
                "reason": reason_,
                "received_at": received_at,
                "detail": detail,
            }
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                item["payload_base64"] = base64.b64encode(raw).decode()  # exact bytes when not text
            out.append(item)
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT reason, count(*) FROM deadletter GROUP BY reason").fetchall()
        return {r: int(n) for r, n in rows}
