"""The PostgreSQL backend of the alert store, for a deployment on more than one host (`SC_STORE_URL=postgresql://...`).

The same `Store` as the SQLite file, over one connection guarded by a lock (as the SQLite backend
does): every write is one transaction that first takes the store's write lock (a transaction-level
advisory lock), so writers on every host go one after the other as they do on SQLite and the change
feed is numbered in commit order. The timeline is append-only by a trigger; the schema moves by the
numbered steps of `alerts/store/pg_migrations.py`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts.store import COMMAND, ReportRows, Row
from alerts.store.pg_migrations import LATEST, STEPS, WRITE_LOCK
from alerts.store.sql import SqlStore, decode, dispatch
from alerts.timeline import Event

Conn = psycopg.Connection[dict[str, Any]]
CONNECT_TIMEOUT_S = 3  # per host tried: a dead primary must not hold the engine up for long


class Unreachable(psycopg.OperationalError):
    """Not even tried: the database was found unreachable and is being probed (alerts/holdover.py)."""


class Prober:
    """Tries a connection once every `every_s` on a thread of its own until one succeeds (then `back` is
    set), so that no caller waits on connection attempts to a server that does not answer."""

    def __init__(self, connect: Callable[[], Any], name: str, every_s: float = 1.0) -> None:
        self.connect = connect
        self.name = name
        self.every_s = every_s
        self.back = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, clear: bool = False) -> None:
        """Probe (once at a time); `clear`: the database is known away now, whatever the last probe found."""
        if self._thread is not None and self._thread.is_alive():
            return
        if clear:
            self.back.clear()

        def probe() -> None:
            while True:
                try:
                    self.connect().close()
                    self.back.set()
                    return
                except Exception:
                    time.sleep(self.every_s)

        self._thread = threading.Thread(target=probe, name=self.name, daemon=True)
        self._thread.start()


def unreachable(exc: BaseException) -> bool:
    """The server gone, restarting, or failing over: a lost or refused connection, or a standby that does
    not take writes yet."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg.errors.ReadOnlySqlTransaction)


def _in(n: int) -> str:
    return ", ".join(["%s"] * n)


@functools.lru_cache(maxsize=4096)
def _pg(sql: str) -> str:
    """A statement written with `?` in psycopg's `%s` style (none of the shared SQL has a literal ? or %)."""
    assert "%" not in sql and "'?" not in sql and "?'" not in sql, sql
    return sql.replace("?", "%s")


def _drow(r: dict[str, Any]) -> Row:
    """A dispatch as plain fields (PostgreSQL's insertion counter is no field of it)."""
    r.pop("rowid", None)
    return dispatch(r)


def migrate(db: Conn, upto: int | None = None) -> int:
    """Bring the store to `upto` (default: the latest), each step in one transaction; the version it is at."""
    target = LATEST if upto is None else upto
    with db.transaction():
        # Two hosts opening a new store at once: one migrates, the other then finds it done.
        db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS store_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM store_schema").fetchone()
        if row is None:
            db.execute("INSERT INTO store_schema(version) VALUES (0)")
        version = int(row["version"]) if row else 0
        if version > LATEST:
            raise RuntimeError(f"the alert store is at schema {version}, newer than this program ({LATEST})")
        for number, sql in enumerate(STEPS, start=1):
            if version < number <= target:
                with db.transaction():
                    db.execute(sql.encode())  # several statements: no parameters
                    db.execute("UPDATE store_schema SET version = %s", (number,))
                version = number
    return version


class PostgresStore(SqlStore):
    _INTEGRITY = (psycopg.errors.UniqueViolation,)
    _C = ' COLLATE "C"'

    @staticmethod
    def _json_text(col: str, key: str) -> str:
        return f"{col}::jsonb ->> '{key}'"

    @staticmethod
    def _q(sql: str) -> str:
        return _pg(sql)

    @staticmethod
    def _drow(r: dict[str, Any]) -> Row:
        return _drow(r)

    def __init__(self, url: str) -> None:
        self._lock = threading.Lock()
        self._url = url
        self._db: Conn = self._connect()
        migrate(self._db)

    def _connect(self) -> Conn:
        return psycopg.connect(self._url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)

    def _live(self) -> Conn:
        """The connection, made again if the last one was lost (a server restart, a failover: with several
        hosts in `SC_STORE_URL` libpq finds the one that takes writes). A failure here is the caller's
        to handle (the engine's store holds its writes meanwhile: alerts/holdover.py)."""
        if self._db.closed or self._db.broken:
            self._db.close()
            self._db = self._connect()
        return self._db

    def _lost(self) -> bool:
        """The connection is gone (the next use makes it again, perhaps to another server)."""
        return bool(self._db.closed or self._db.broken)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Conn]:
        with self._lock:
            yield self._live()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Conn]:
        """One write transaction, after the store's write lock (see pg_migrations.WRITE_LOCK)."""
        with self._lock:
            db = self._live()
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                cmd = COMMAND.get()
                if cmd is not None:
                    db.execute("INSERT INTO commands(command_id, name, actor, at) VALUES (%s, %s, %s, %s)"
                               " ON CONFLICT (command_id) DO NOTHING", cmd)
                yield db

    def _clock(self, db: Any) -> float:
        """The database server's clock: hosts whose own clocks drift apart still agree on a lease."""
        return float(db.execute("SELECT extract(epoch FROM clock_timestamp()) AS t").fetchone()["t"])

    # -- condition state and last-heard times ------------------------------------------------------

    def save_conditions(self, upserts: list[tuple[str, str, dict[str, Any]]],
                        deletes: list[tuple[str, str]]) -> None:
        if not upserts and not deletes:
            return
        with self._tx() as db, db.cursor() as cur:
            if deletes:
                cur.executemany("DELETE FROM conditions WHERE rule = %s AND subject = %s", deletes)
            if upserts:
                cur.executemany(
                    "INSERT INTO conditions(rule, subject, true_since_ts, clear_since, last_value, last_evidence,"
                    " data) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (rule, subject) DO UPDATE SET"
                    " true_since_ts = excluded.true_since_ts, clear_since = excluded.clear_since,"
                    " last_value = excluded.last_value, last_evidence = excluded.last_evidence,"
                    " data = excluded.data",
                    [(rule, subject, c.get("true_since_ts"), c.get("clear_since"),
                      orjson.dumps(c.get("last_value")).decode() if c.get("last_value") is not None else None,
                      c.get("last_evidence"), orjson.dumps(c["data"]).decode() if c.get("data") else None)
                     for rule, subject, c in upserts])

    def load_seen(self) -> dict[str, float]:
        with self._read() as db:
            return {r["device_id"]: r["last_seen"] for r in db.execute("SELECT device_id, last_seen FROM device_seen")}

    def save_seen(self, seen: list[tuple[str, float]]) -> None:
        if not seen:
            return
        with self._tx() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO device_seen(device_id, last_seen) VALUES (%s, %s) ON CONFLICT (device_id)"
                " DO UPDATE SET last_seen = GREATEST(device_seen.last_seen, excluded.last_seen)", seen)

    # -- dispatches --------------------------------------------------------------------------------

    def open_dispatches(self, states: Sequence[str], community: str | None = None) -> list[Row]:
        q = ("SELECT d.* FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
             f"WHERE d.state IN ({_in(len(states))})")
        args: list[Any] = list(states)
        if community:
            q += " AND a.community = %s"
            args.append(community)
        with self._read() as db:
            rows = db.execute(q + ' ORDER BY d.deadline COLLATE "C", d.rowid', args).fetchall()
        return [_drow(r) for r in rows]

    # -- the period report -------------------------------------------------------------------------
    def report_rows(self, lo: str, hi: str, community: str | None, open_states: Sequence[str]) -> ReportRows:
        q = 'SELECT * FROM alerts WHERE started_at COLLATE "C" >= %s AND started_at COLLATE "C" < %s'
        args: list[Any] = [lo, hi]
        if community:
            q += " AND community = %s"
            args.append(community)
        dq = ("SELECT d.*, a.community AS _c FROM dispatches d JOIN alerts a ON a.alert_id = d.alert_id "
              'WHERE d.created_at COLLATE "C" >= %s AND d.created_at COLLATE "C" < %s'
              f" AND d.state IN ({_in(len(open_states))})")
        dargs: list[Any] = [lo, hi, *open_states]
        if community:
            dq += " AND a.community = %s"
            dargs.append(community)
        period = 'a.started_at COLLATE "C" >= %s AND a.started_at COLLATE "C" < %s'
        # One snapshot for all four reads: writers on other hosts go on meanwhile.
        with self._lock, self._live().transaction():
            db = self._db
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            alerts = [decode(r) for r in db.execute(q, args).fetchall()]
            firsts = db.execute(
                "SELECT e.alert_id, e.event, MIN(e.at COLLATE \"C\") AS at FROM alert_events e JOIN alerts a "
                f"ON a.alert_id = e.alert_id WHERE {period} AND e.event IN (%s, %s) "
                "GROUP BY e.alert_id, e.event", (lo, hi, str(Event.ACKNOWLEDGED), str(Event.ARRIVED))).fetchall()
            drows = db.execute(dq + ' ORDER BY d.deadline COLLATE "C"', dargs).fetchall()
            overrides = {r["alert_id"]: int(r["n"]) for r in db.execute(
                "SELECT e.alert_id, COUNT(*) AS n FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id "
                f"WHERE {period} AND e.event IN (%s, %s) "
                "AND e.data::jsonb -> 'override' IN ('true'::jsonb, '1'::jsonb) GROUP BY e.alert_id",
                (lo, hi, str(Event.RESOLVED), str(Event.ARCHIVED))).fetchall()}
        return ReportRows(
            alerts, {(r["alert_id"], r["event"]): r["at"] for r in firsts},
            [(_drow({k: v for k, v in r.items() if k != "_c"}), r["_c"]) for r in drows], overrides)
