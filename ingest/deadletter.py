"""The dead-letter store: every rejected message with topic, payload, reason and time.

SQLite under `SC_DATA_DIR/deadletter/` (0600: payloads may name people), bounded twice: to
`SC_DEADLETTER_MAX` rows and to `SC_DEADLETTER_MAX_BYTES` bytes. Past either bound the oldest
rows are dropped first and counted, so an operator sees that something was dropped.
A payload is kept up to the contract's 16 KiB; beyond that its first 16 KiB are kept with its
full length and SHA-256 (every row has both), so a flood of 1 MB junk cannot fill the disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from core.contract import MAX_PAYLOAD_BYTES
from core.diskfull import is_disk_full
from core.secrets import make_private
from core.timebase import iso_ms

log = logging.getLogger(__name__)

KEEP_BYTES = MAX_PAYLOAD_BYTES  # payload bytes kept per dead letter
ROW_OVERHEAD = 64  # bytes counted per row on top of its payload, topic and detail

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
# Added for issue 12 (older stores are migrated in place).
COLUMNS = {"payload_len": "INTEGER", "payload_sha256": "TEXT", "size": "INTEGER NOT NULL DEFAULT 0"}
_SIZE_SQL = f"(length(payload) + length(topic) + length(detail) + {ROW_OVERHEAD})"


class DeadLetter(NamedTuple):  # a tuple: built per rejected message on the network thread
    topic: str
    payload: bytes
    reason: str
    detail: str
    received_ms: int


def store_path(data_dir: Path) -> Path:
    return data_dir / "deadletter" / "deadletter.sqlite"


class DeadLetterStore:
    def __init__(self, path: Path, max_rows: int, max_bytes: int = 268_435_456) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            # Started on a full disk: ingest goes on (it holds its dead letters in memory, and they are
            # written once this store opens, on a later `add_many`). Readers see an empty store meanwhile.
            log.error("dead-letter store %s cannot be opened: data disk full; opened when there is room", path)

    def _open(self) -> None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # created private (WAL/SHM follow its mode)
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            make_private(p)  # and made private if an older version left it 0644
        db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            self._conn = db
            with db:
                have = {r[1] for r in db.execute("PRAGMA table_info(deadletter)")}
                for col, decl in COLUMNS.items():
                    if col not in have:
                        db.execute(f"ALTER TABLE deadletter ADD COLUMN {col} {decl}")
                if "size" not in have:
                    db.execute(f"UPDATE deadletter SET size = {_SIZE_SQL}, payload_len = length(payload)")
                if self._counter("bytes") is None:
                    (total,) = db.execute("SELECT coalesce(sum(size), 0) FROM deadletter").fetchone()
                    self._bump("bytes", int(total))
        except BaseException:
            self._conn = None
            db.close()
            raise

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened now if the disk was full when the store started (raises while it is)."""
        if self._conn is None:
            self._open()
        assert self._conn is not None
        return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def _counter(self, name: str) -> int | None:
        row = self._db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else None

    def _bump(self, name: str, by: int) -> None:
        self._db.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def _trim(self) -> None:
        """Drop the oldest rows while over either bound (inside the caller's transaction)."""
        (top,) = self._db.execute("SELECT max(id) FROM deadletter").fetchone()
        if top is None:
            return
        cut = int(top) - self.max_rows  # rows with id <= cut are past the row bound
        excess = (self._counter("bytes") or 0) - self.max_bytes
        if excess > 0:
            freed = 0
            for rid, size in self._db.execute("SELECT id, size FROM deadletter ORDER BY id"):
                freed += int(size)
                if freed >= excess:
                    cut = max(cut, int(rid))
                    break
        if cut <= 0:
            return
        rows, size = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM deadletter WHERE id <= ?", (cut,)).fetchone()
        if rows:
            self._db.execute("DELETE FROM deadletter WHERE id <= ?", (cut,))
            self._bump("dropped", int(rows))
            self._bump("dropped_bytes", int(size))
            self._bump("bytes", -int(size))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def add_many(self, letters: Iterable[DeadLetter]) -> int:
        rows = []
        added = 0
        for d in letters:
            raw = bytes(d.payload)
            kept = raw[:KEEP_BYTES]
            size = len(kept) + len(d.topic.encode()) + len(d.detail.encode()) + ROW_OVERHEAD
            added += size
            rows.append((iso_ms(d.received_ms), d.topic, kept, d.reason, d.detail, len(raw),
                         hashlib.sha256(raw).hexdigest(), size))
        if not rows:
            return 0
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO deadletter(received_at, topic, payload, reason, detail, payload_len, payload_sha256,"
                " size) VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )
            self._bump("bytes", added)
            self._trim()
        return len(rows)

    def rollback(self) -> None:
        """End a transaction a failed write left open (SQLite may have rolled it back already)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            if self._conn is not None:
                self._conn.rollback()

    def dropped(self) -> int:
        with self._lock:
            return (self._counter("dropped") or 0) if self._conn is not None else 0

    def usage(self) -> dict[str, int]:
        """Rows and bytes kept, and what was dropped to keep within the bounds."""
        with self._lock:
            (rows,) = self._db.execute("SELECT count(*) FROM deadletter").fetchone()
            return {"rows": int(rows), "bytes": self._counter("bytes") or 0,
                    "dropped": self._counter("dropped") or 0, "dropped_bytes": self._counter("dropped_bytes") or 0}

    def list(self, limit: int | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT received_at, topic, payload, reason, detail, payload_len, payload_sha256 FROM deadletter"
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
        for received_at, topic, payload, reason_, detail, length, digest in rows:
            raw = bytes(payload)
            item: dict[str, Any] = {
                "topic": topic,
                "payload": raw.decode("utf-8", errors="replace"),
                "reason": reason_,
                "received_at": received_at,
                "detail": detail,
                "payload_bytes": len(raw) if length is None else int(length),
                "payload_sha256": digest or hashlib.sha256(raw).hexdigest(),
                "truncated": length is not None and int(length) > len(raw),
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
