"""A small SQL database for the staff accounts and the sign-in state: a SQLite file of their own by
default, or the PostgreSQL store (`SC_STORE_URL=postgresql://...`), so that every dashboard host
behind the load balancer knows the same accounts and serves any signed-in person.

Statements are written once with `?` placeholders and plain SQL; PostgreSQL gets `%s`, and `REAL`
columns (times in epoch seconds) become `DOUBLE PRECISION` there (its `REAL` is 4 bytes: seconds
would be lost). One connection per thread, each statement its own transaction unless inside
`transaction()`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

POSTGRES_SCHEMES = ("postgresql", "postgres")
# Schema setup by several hosts at once: one at a time (a number no other lock of the project uses).
SCHEMA_LOCK = 0x5C_5E55


def store_scheme(url: str) -> str:
    """'' (a path), 'sqlite', 'postgresql' or 'postgres' for a `SC_STORE_URL` value."""
    return url.split(":", 1)[0].lower() if "://" in url or url.startswith("sqlite:") else ""


def postgres_url(store_url: str | None) -> str | None:
    """The PostgreSQL URL when `SC_STORE_URL` names PostgreSQL, else None (the SQLite default)."""
    return store_url if store_url and store_scheme(store_url) in POSTGRES_SCHEMES else None


@functools.lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    assert "%" not in sql, sql  # none of these statements has a literal %
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql.replace("?", "%s"))


class Db:
    """A SQLite file (Path) or a PostgreSQL database (URL)."""

    def __init__(self, target: Path | str) -> None:
        self.pg = isinstance(target, str)
        self.target = target
        self._local = threading.local()
        if isinstance(target, Path):
            target.parent.mkdir(parents=True, exist_ok=True)
            for p in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)  # private before SQLite writes a byte
                os.close(fd)
                os.chmod(p, 0o600)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.pg:
                import psycopg

                conn = psycopg.connect(str(self.target), autocommit=True)
            else:
                conn = sqlite3.connect(self.target, timeout=10, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; the cursor (fetchone, fetchall, rowcount, iteration)."""
        return self._conn().execute(_pg(sql) if self.pg else sql, tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        conn = self._conn()
        if self.pg:
            with conn.cursor() as cur:
                cur.executemany(_pg(sql), [tuple(r) for r in rows])
        else:
            conn.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._conn()
        if self.pg:
            with conn.transaction():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def script(self, schema: str) -> None:
        """Create what `schema` (statements separated by `;`, all IF NOT EXISTS) describes."""
        conn = self._conn()
        if not self.pg:
            conn.executescript(schema)
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for stmt in (s.strip() for s in schema.split(";")):
                if stmt:
                    conn.execute(_pg(stmt))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
