"""The alert store is the only code that speaks SQL to alert state, behind one interface.

- No module outside alerts/store/ imports sqlite3 or psycopg or reaches into a store's connection, transaction
  or step writer (`._db`, `._tx`, `._step`) or its row decoder (`_decode`), but for the few listed in
  ALLOWED, each with why; a listed module that no longer needs it fails too, so the list stays true.
- Every public method of each backend (SQLite, PostgreSQL) is part of `Store`, so either serves every
  caller, and `open_store` picks the backend from SC_STORE_URL.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from alerts.holdover import HeldPostgresStore, HeldStore, Holding
from alerts.store import AlertStore, Store, open_store, store_path
from alerts.store.postgres import PostgresStore
from core.settings import Settings
from tests.core.test_one_home import SOURCE_DIRS, imported, rel, source_files

ROOT = Path(__file__).resolve().parents[3]
STORE = "alerts/store/"
PRIVATE = {"_db", "_tx", "_step", "_decode"}
DRIVERS = {"sqlite3", "psycopg"}
# Modules that may still speak SQLite, and why (a path ending in / is a folder).
ALLOWED = {
    "alerts/migrations/": "the SQLite backend's numbered schema steps (PRAGMA user_version), run by it",
    "geodata/basemap.py": "reads a street's own MBTiles file (an SQLite file of map tiles): no alert state",
    "geodata/basemap_convert.py": "writes the MBTiles a GeoTIFF or PMTiles is cut into: no alert state",
    "alerts/inbox.py": "the demo inbox's own file of the messages it received: no alert state",
    "ingest/deadletter.py": "ingest's own dead-letter store in its own file: no alert state",
    "core/sqldb.py": "staff accounts and sign-in state (their own few tables, no alert state) in their own "
                     "SQLite file, or beside the store in PostgreSQL so that every dashboard host shares them",
    "smartcommunity/backup.py": "copies the SQLite files consistently with SQLite's online backup, file by file",
    "core/diskfull.py": "tells SQLite's 'disk is full' error from others (the held store, the dead letters)",
    "bench/": "measures the files directly",
}


def allowed(path: str) -> bool:
    return path.startswith(STORE) or any(path == a or (a.endswith("/") and path.startswith(a)) for a in ALLOWED)


def sql_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every import of sqlite3 and every reach into a store's SQL internals."""
    out = [(line, f"imports {mod}") for line, mod in imported(source) if mod.split(".")[0] in DRIVERS]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            out.append((node.lineno, f"uses .{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alerts.store"):
            out += [(node.lineno, f"imports {a.name}") for a in node.names if a.name in PRIVATE]
    return out


def test_the_scanner_sees_every_form() -> None:
    src = ("import sqlite3\nfrom sqlite3 import Row\n"
           "def f(store):\n    import importlib\n    importlib.import_module('sqlite3')\n"
           "    store._db.execute('SELECT 1')\n    with store._tx() as db:\n"
           "        store._step(db, 'a', 'e', 't', None, None, None)\n"
           "from alerts.store.sqlite import _decode\nimport json\nstore.get('a')\nfrom psycopg.rows import dict_row\n")
    assert sorted(sql_uses(src)) == [
        (1, "imports sqlite3"), (2, "imports sqlite3"), (5, "imports sqlite3"), (6, "uses ._db"),
        (7, "uses ._tx"), (8, "uses ._step"), (9, "imports _decode"), (12, "imports psycopg.rows")]


def test_only_the_store_speaks_sql() -> None:
    files = source_files((".py",))
    assert len(files) > 100 and {rel(p).split("/")[0] for p in files} >= {"alerts", "dashboard", "ingest"}
    bad = [f"{rel(p)}:{line} {what}" for p in files if not allowed(rel(p))
           for line, what in sql_uses(p.read_text())]
    assert bad == [], "SQL belongs in alerts/store/ (a method of Store), not here"


def test_every_allowed_module_still_needs_it() -> None:
    assert set(SOURCE_DIRS) >= {a.split("/")[0] for a in ALLOWED}
    for where in ALLOWED:
        files = [p for p in source_files((".py",)) if rel(p) == where or rel(p).startswith(where)]
        assert files, f"{where} is gone: drop it from ALLOWED"
        assert any(sql_uses(p.read_text()) for p in files), f"{where} no longer speaks SQLite: drop it from ALLOWED"


def test_the_store_itself_holds_the_sql() -> None:
    # The scan above would pass vacuously if the store had moved somewhere it does not look.
    assert any(sql_uses(p.read_text()) for p in (ROOT / STORE).glob("*.py"))


def public(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)}


def test_every_store_method_is_part_of_the_interface() -> None:
    assert issubclass(AlertStore, Store) and issubclass(HeldStore, Store)
    declared = set(Store.__abstractmethods__)
    assert {"insert", "timeline", "last_seq", "changes_since", "command", "dispatch_advance", "archive_insert",
            "report_rows"} <= declared
    # Only the full-disk hold (alerts/holdover.py) needs these two, and only of the SQLite file.
    sqlite_only = {"open_frozen", "adopt"}
    assert public(AlertStore) - declared == sqlite_only
    assert public(Holding) - declared == {"retry", "snapshot"}  # the held stores' own state
    assert issubclass(HeldStore, Holding) and issubclass(HeldPostgresStore, Holding)
    assert public(HeldStore) - declared == set() and public(HeldPostgresStore) - declared == {"retry", "snapshot"}
    assert issubclass(PostgresStore, Store) and public(PostgresStore) - declared == set()
    assert not AlertStore.__abstractmethods__ and not PostgresStore.__abstractmethods__


def test_open_store_picks_the_sqlite_file(tmp_path: Path) -> None:
    default = open_store(Settings(data_dir=str(tmp_path / "a")))
    try:
        assert isinstance(default, AlertStore) and store_path(tmp_path / "a").is_file()
    finally:
        default.close()
    for url, path in ((f"sqlite:///{tmp_path}/b.sqlite", tmp_path / "b.sqlite"),
                      (str(tmp_path / "c.sqlite"), tmp_path / "c.sqlite"),
                      (f"sqlite:{tmp_path}/d.sqlite", tmp_path / "d.sqlite")):
        store = open_store(Settings(data_dir=str(tmp_path / "x"), store_url=url))
        try:
            assert path.is_file(), url
            assert store.last_seq() == 0
        finally:
            store.close()
    assert not store_path(tmp_path / "x").exists()


def test_open_store_picks_postgresql(tmp_path: Path, pg_url: str) -> None:
    store = open_store(Settings(data_dir=str(tmp_path), store_url=pg_url))
    try:
        assert isinstance(store, PostgresStore) and store.last_seq() == 0
    finally:
        store.close()
    assert not store_path(tmp_path).exists()  # no SQLite file beside it
    with pytest.raises(ValueError, match="unknown store 'mysql'"):
        open_store("mysql://sc@db/sc")
