"""Numbered schema migrations of the alert store (SQLite `PRAGMA user_version` holds the last applied).

One file a step, `NNNN_what.sql`, applied in order inside one transaction each; a store is never
changed by hand. A migration, once on main, is never edited: a later change is a new file. Stores
made before migrations existed (user_version 0, an `alerts` table already there) are taken up by
0001, written so that it is a no-op on them.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration, in order."""
    out = []
    for entry in resources.files(__package__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    numbers = [n for n, _, _ in out]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"alert store migrations are not numbered 1..n without gaps: {numbers}")
    return out


LATEST = len(migrations())


def migrate(db: sqlite3.Connection, upto: int | None = None) -> int:
    """Bring the store to `upto` (default: the latest); returns the version it is at."""
    target = LATEST if upto is None else upto
    # BEGIN IMMEDIATE: two processes opening an old store at once migrate it once, one after the other.
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > LATEST:
            raise RuntimeError(f"the alert store is at schema {version}, newer than this program ({LATEST})")
        for number, _name, sql in migrations():
            if version < number <= target:
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
                version = number
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return version


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"unterminated SQL statement in a migration: {buf.strip()[:80]}")
    return out
