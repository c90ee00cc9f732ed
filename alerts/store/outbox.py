"""The notification outbox and the targets' cursors in the alert store's PostgreSQL database (tables
`outbox`, `outbox_cursors`, migration 0015): the SQL side of `alerts/delivery.py`'s outbox when the store
is PostgreSQL, so that the engine taking over a partition on another host goes on delivering where the
dead one stopped."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any

import orjson
import psycopg

from alerts.delivery import BaseOutbox, Superseded
from alerts.store.pg_migrations import WRITE_LOCK
from alerts.store.postgres import CONNECT_TIMEOUT_S, Prober, Unreachable, unreachable

log = logging.getLogger(__name__)

RECENT_S = 600.0  # written again after a reconnection: longer than any replication lag worth the name
RECENT_MAX = 20_000
# The lock first (a materialised CTE runs before the row is made): `seq` then follows commit order. Written
# again (a lost answer, a reconnection), an entry already there stays one entry (its id is unique).
INSERT = ("WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock(%s)) "
          "INSERT INTO outbox(part, id, entry) SELECT %s, %s, %s FROM l ON CONFLICT (id) DO NOTHING")


class TableOutbox(BaseOutbox):
    """The outbox and the cursors in the alert store's PostgreSQL database (tables `outbox`,
    `outbox_cursors`), one partition's (`part`, the name of its lease): the engine that takes over the
    lease on another host goes on from the cursors where the dead one stopped.

    An append is one INSERT (one statement, one round trip) after the store's write lock, so positions
    (`seq`) are handed out in commit order and a reader never passes over one committed later. A
    process claims a target's cursor when it starts delivering for it (`load_cursor(claim=True)`); the
    cursor is then saved only while it still owns it, and the owner is checked before every send: a
    process that was taken over (a half-dead host coming back) stops delivering instead of sending
    a second time. While the database cannot be reached, appends are held (`BaseOutbox`) and a thread
    probes it once a second: no caller waits on a connection attempt meanwhile."""

    RETRY_ON_APPEND = False

    def __init__(self, url: str, part: str, owner: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.part = part
        self.name = f"outbox of {part} in the alert store"
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._db: Any = None
        self._down_since: float | None = None
        self._prober = Prober(self._connect, "outbox-probe")
        self._size = 1
        # What was written lately, to write again (idempotently) on every reconnection: the server reached
        # then may be a standby promoted after an asynchronous failover that never received them.
        self._recent: deque[tuple[float, tuple[Any, ...]]] = deque(maxlen=RECENT_MAX)
        self.written_again = 0

    def holdable(self, exc: BaseException) -> bool:
        return unreachable(exc)

    # -- the connection -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def _conn(self) -> Any:
        if self._down_since is not None and not self._prober.back.is_set():
            self._probe()
            raise Unreachable("the alert store's database is unreachable (probing every second)")
        if self._db is None or self._db.closed or self._db.broken:
            again = self._db is not None or self._down_since is not None
            if self._db is not None:
                self._db.close()
            self._db = self._connect()
            if self._down_since is not None:
                log.warning("outbox: the database answers again")
            self._down_since = None
            if again:
                self._write_recent(self._db)
        return self._db

    def _write_recent(self, db: Any) -> None:
        """Write again what was written in the last `RECENT_S`; what the database has stays as it is."""
        cutoff = time.monotonic() - RECENT_S
        n = 0
        for at, args in list(self._recent):
            if at >= cutoff:
                n += db.execute(INSERT, args).rowcount or 0
        if n:
            self.written_again += n
            log.warning("outbox: %d entries the database had lost (a failover before they reached the standby) "
                        "written again from memory", n)

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """One statement; a lost connection marks the database away (the caller decides what then)."""
        with self._lock:
            try:
                return self._conn().execute(sql, args)
            except Exception as exc:
                if not self.holdable(exc):
                    raise
                self._prober.back.clear()  # probed again before the next try (also when a reconnection failed)
                if self._down_since is None:
                    self._down_since = time.time()
                    log.critical("OUTBOX DATABASE UNREACHABLE (%s): notifications are delivered from memory "
                                 "and written when it answers again", exc)
                raise

    def _probe(self) -> None:
        self._prober.start()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    # -- entries --------------------------------------------------------------------------------------
    def _write(self, entry: dict[str, Any]) -> None:
        args = (WRITE_LOCK, self.part, str(entry["id"]), orjson.dumps(entry).decode())
        self._run(INSERT, args)
        self._recent.append((time.monotonic(), args))

    def size(self) -> int:
        try:
            row = self._run("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox WHERE part = %s", (self.part,)).fetchone()
            self._size = int(row[0])
        except Exception as exc:
            if not self.holdable(exc):
                raise
        return self._size  # the last known, while the database is away

    def read(self, offset: int, limit: int = 2000) -> list[tuple[int, dict[str, Any] | None]]:
        self.consumed = offset
        try:
            rows = self._run("SELECT seq, entry FROM outbox WHERE part = %s AND seq >= %s ORDER BY seq LIMIT %s",
                             (self.part, offset, limit)).fetchall()
        except Exception as exc:
            if not self.holdable(exc):
                raise
            return []
        out: list[tuple[int, dict[str, Any] | None]] = []
        for seq, raw in rows:
            try:
                entry = orjson.loads(raw)
                out.append((int(seq), entry if isinstance(entry, dict) else None))
            except orjson.JSONDecodeError:
                out.append((int(seq), None))
            self.consumed = int(seq) + 1
        return out

    # -- cursors --------------------------------------------------------------------------------------
    def load_cursor(self, target: str, claim: bool = False) -> dict[str, Any] | None:
        if claim:
            row = self._run("UPDATE outbox_cursors SET owner = %s WHERE part = %s AND target = %s RETURNING state",
                            (self.owner, self.part, target)).fetchone()
        else:
            row = self._run("SELECT state FROM outbox_cursors WHERE part = %s AND target = %s",
                            (self.part, target)).fetchone()
        if row is None:
            return None
        d = orjson.loads(row[0])
        if not isinstance(d, dict):
            raise ValueError("not a cursor")
        return d

    def save_cursor(self, target: str, state: dict[str, Any]) -> None:
        cur = self._run("INSERT INTO outbox_cursors(part, target, state, owner) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (part, target) DO UPDATE SET state = excluded.state "
                        "WHERE outbox_cursors.owner = excluded.owner",
                        (self.part, target, orjson.dumps(state).decode(), self.owner))
        if cur.rowcount == 0:
            raise Superseded(target)

    def still_mine(self, target: str) -> bool:
        try:
            row = self._run("SELECT owner FROM outbox_cursors WHERE part = %s AND target = %s",
                            (self.part, target)).fetchone()
        except Exception as exc:
            if not self.holdable(exc):
                raise
            return True  # nobody else can claim it from a database nobody reaches either... or so it seems here
        return row is None or row[0] == self.owner

    def drop_cursors(self, keep: set[str]) -> None:
        for (target,) in self._run("SELECT target FROM outbox_cursors WHERE part = %s", (self.part,)).fetchall():
            if target not in keep:
                self._run("DELETE FROM outbox_cursors WHERE part = %s AND target = %s", (self.part, target))

    def compact(self, keep_s: float = 86400.0) -> int:
        """Delete the entries every target has finished that are older than `keep_s`; how many."""
        cur = self._run(
            "DELETE FROM outbox WHERE part = %s AND seq < (SELECT MIN((state::jsonb ->> 'offset')::bigint) "
            "FROM outbox_cursors WHERE part = %s) AND (entry::jsonb ->> 'at')::float8 < %s",
            (self.part, self.part, time.time() - keep_s))
        return int(cur.rowcount or 0)


def table_status(url: str) -> dict[str, Any]:
    """`smartcommunity notify status` on PostgreSQL: each partition's entries and each target's backlog."""
    parts: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
        for part, n in db.execute("SELECT part, count(*) FROM outbox GROUP BY part"):
            parts[part] = {"entries": int(n), "cursors": {}}
        for part, target, owner, state, behind in db.execute(
                "SELECT c.part, c.target, c.owner, c.state, (SELECT count(*) FROM outbox o WHERE o.part = c.part"
                " AND o.seq >= (c.state::jsonb ->> 'offset')::bigint) FROM outbox_cursors c ORDER BY 1, 2"):
            done = len(orjson.loads(state).get("done") or [])
            parts.setdefault(part, {"entries": 0, "cursors": {}})["cursors"][target] = {
                "behind_entries": int(behind) - done, "finished_ahead": done, "owner": owner}
    return {"outbox": "the alert store (PostgreSQL)", "partitions": parts}
