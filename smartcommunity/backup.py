"""`smartcommunity backup DIR` and `smartcommunity restore DIR`: everything needed to bring the system back.

A backup is a folder (0700, every file 0600) holding
- `data/`: `SC_DATA_DIR` as it is needed to come back: the alert store and every other SQLite file
  (accounts' sessions, dead letters) copied with SQLite's online backup API, so a consistent copy is
  taken while ingest, alerts and the dashboard write; append-only logs (outbox, audit) up to their last
  whole line; the registry, layers, secrets, PKI and broker files as they are. Left out: the InfluxDB
  files (taken its own way, below), heartbeats and pid files (`run/`), logs, locks and temp files.
- `influxdb/`: `influxd backup -portable` of `SC_INFLUX_DB`, through InfluxDB's backup service
  (its RPC bind-address, loopback only; `up` starts InfluxDB with it on a free port noted in
  `SC_DATA_DIR/influxdb/influxdb.conf`).
- `external/`: configuration and other files the settings point at outside `SC_DATA_DIR` (the config
  file, a registry, rules, roster, channels or teams file, the secrets folder).
- `postgres/store.dump`: with the alert store on PostgreSQL (`SC_STORE_URL=postgresql://…`), that
  database (alerts, timelines, dispatches, accounts, sessions, leases) by `pg_dump --format=custom`,
  one consistent snapshot while everything writes; it goes back with `pg_restore` into the database
  `SC_STORE_URL` names, whose old content is first dumped beside the set-aside files.
- `manifest.json`, written last: every file with its size, SHA-256, mode and where it goes back,
  the alert store's schema version and the backup format. A folder without it is not a backup.

Restore refuses while any part of the system runs, refuses a manifest that does not check out file by
file, and puts back what the backup holds; a file it replaces is kept under
`SC_DATA_DIR/pre-restore-<time>/` (or beside an external file), so a restore by mistake loses nothing.
The time series go back with `influxd restore -portable` into the InfluxDB at `SC_INFLUX_URL`, started
here the way `up` starts it when it is on loopback and not running.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import heartbeat
from core.secrets import PRIVATE_DIR, PRIVATE_FILE
from core.settings import Settings
from core.sqldb import postgres_url
from core.timebase import beijing, now_iso

FORMAT = "smartcommunity-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PG_DUMP = "postgres/store.dump"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Under SC_DATA_DIR, not needed to come back: InfluxDB's files (backed up through influxd), heartbeats and
# pid files, and earlier restores' set-aside copies.
SKIP_DIRS = frozenset({"influxdb", "run"})
SKIP_DIR_PREFIX = "pre-restore-"
# (mosquitto writes mosquitto.db.new, then renames it: the .new file is never the one to keep.)
SKIP_FILE = re.compile(r"(\.log|-wal|-shm|-journal|\.lock|\.pid|\.tmp|\.new)$|^\.|^lock$")
APPEND_ONLY = (".jsonl",)
CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass
class Entry:
    path: str  # inside the backup folder
    root: str  # "data" (restore_to is relative to SC_DATA_DIR), "external" (absolute), "influxdb" or "postgres"
    restore_to: str | None
    bytes: int = 0
    sha256: str = ""
    mode: str = "0600"
    how: str = "copy"  # copy | sqlite | append-only | influxd | pg_dump

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "root": self.root, "restore_to": self.restore_to, "bytes": self.bytes,
                "sha256": self.sha256, "mode": self.mode, "how": self.how}


@dataclass
class Manifest:
    created_at: str
    host: str
    data_dir: str
    influx_db: str | None
    alert_store_schema: int | None
    entries: list[Entry] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "created_at": self.created_at,
                "host": self.host, "data_dir": self.data_dir, "influx_db": self.influx_db,
                "schema": {"alert_store": self.alert_store_schema},
                "total_bytes": sum(e.bytes for e in self.entries),
                "files": [e.as_json() for e in self.entries]}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)


# ---------------------------------------------------------------------------------------------- backup

def _data_files(data: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(data):
        here = Path(dirpath)
        if here == data:
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(SKIP_DIR_PREFIX)]
        dirnames.sort()
        for name in sorted(filenames):
            p = here / name
            if not SKIP_FILE.search(name) and p.is_file() and not p.is_symlink():
                yield p


def _copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (online backup API), as one self-contained file."""
    with contextlib.closing(sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as s, \
            contextlib.closing(sqlite3.connect(dst)) as d:
        s.backup(d)
        d.execute("PRAGMA journal_mode=DELETE")  # no -wal beside it: one file to carry


def _copy_prefix(src: Path, dst: Path) -> None:
    """An append-only log up to its last whole line (a line being appended now is left for next time)."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        left = os.fstat(fin.fileno()).st_size  # what is there now; later appends wait for the next backup
        while left > 0 and (chunk := fin.read(min(CHUNK, left))):
            fout.write(chunk)
            left -= len(chunk)
    with dst.open("r+b") as fh:  # cut a line still being written
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - CHUNK)
            fh.seek(start)
            nl = fh.read(pos - start).rfind(b"\n")
            if nl >= 0:
                fh.truncate(start + nl + 1)
                return
            pos = start
        fh.truncate(0)


def _store_schema(path: Path) -> int | None:
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def _external(settings: Settings) -> list[Path]:
    """Files and folders the settings point at outside SC_DATA_DIR."""
    data = settings.data_path
    out: list[Path] = []
    candidates = [settings.config, settings.registry_file, settings.alerts_rules_file, settings.alerts_roster_file,
                  settings.alerts_channels_file, settings.dispatch_teams_file, settings.secrets_dir]
    for c in candidates:
        if not c:
            continue
        p = Path(c).resolve()
        if p.exists() and not p.is_relative_to(data) and p not in out:
            out.append(p)
    return out


def _add_file(dest: Path, m: Manifest, src: Path, path: str, root: str, restore_to: str) -> None:
    target = dest / path
    _private_dir(target.parent)
    mode = f"{os.stat(src).st_mode & 0o777:04o}"
    if _is_sqlite(src):
        how = "sqlite"
        _copy_sqlite(src, target)
    elif src.name.endswith(APPEND_ONLY):
        how = "append-only"
        _copy_prefix(src, target)
    else:
        how = "copy"
        shutil.copyfile(src, target)
    os.chmod(target, PRIVATE_FILE)
    m.entries.append(Entry(path, root, restore_to, target.stat().st_size, _sha256(target), mode, how))


def influxdb_rpc(settings: Settings, given: str | None = None) -> str:
    """host:port of InfluxDB's backup service: as given, else that of the InfluxDB `up` started for
    this data dir when it is the one at SC_INFLUX_URL, else InfluxDB's default port on that host."""
    if given:
        return given
    from smartcommunity.services import influxdb_rpc_address

    ours = influxdb_rpc_address(settings)
    return ours or f"{settings.influx.host}:8088"


def _influxd() -> str:
    from smartcommunity.services import INFLUXDB, find_binary

    found = find_binary(INFLUXDB.binary)
    if not found:
        raise BackupError(f"influxd is not installed (Debian package {INFLUXDB.package}); it is needed to back up "
                          "and restore the time series")
    return found


def _run_tool(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise BackupError(f"{what} failed (exit {proc.returncode}): {tail}")


def _admin_client(settings: Settings):  # type: ignore[no-untyped-def]
    from core.accounts import INFLUX_ADMIN
    from core.influx import client_for

    return client_for(settings, account=INFLUX_ADMIN if settings.secure else None)


def _databases(settings: Settings) -> set[str]:
    client = _admin_client(settings)
    try:
        return {r["name"] for r in client.rows("SHOW DATABASES")}
    finally:
        client.close()


def backup(settings: Settings, dest: Path, influx_rpc: str | None = None, skip_influx: bool = False) -> Manifest:
    """Write a backup of the (running or stopped) system into `dest`, a new or empty folder."""
    from alerts.store import store_path

    dest = dest.resolve()
    data = settings.data_path
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new folder")
    if dest.is_relative_to(data):
        raise BackupError(f"{dest} is inside SC_DATA_DIR ({data}): back up to another disk or folder")
    if not data.is_dir():
        raise BackupError(f"SC_DATA_DIR {data} does not exist: nothing to back up")
    _private_dir(dest)
    pg = postgres_url(settings.store_url)
    m = Manifest(now_iso(), socket.gethostname(), str(data), None if skip_influx else settings.influx_db,
                 _pg_schema(pg) if pg else _store_schema(store_path(data)))
    if pg:
        _backup_postgres(pg, dest, m)
    for src in _data_files(data):
        rel = src.relative_to(data).as_posix()
        try:
            _add_file(dest, m, src, f"data/{rel}", "data", rel)
        except FileNotFoundError:  # gone since the walk (a replayed spool segment): nothing to bring back
            (dest / "data" / rel).unlink(missing_ok=True)
    for n, ext in enumerate(_external(settings)):
        files = [ext] if ext.is_file() else [p for p in sorted(ext.rglob("*")) if p.is_file()]
        for src in files:
            inner = src.name if ext.is_file() else f"{ext.name}/{src.relative_to(ext).as_posix()}"
            _add_file(dest, m, src, f"external/{n}/{inner}", "external", str(src))
    if not skip_influx:
        _backup_influx(settings, dest, m, influxdb_rpc(settings, influx_rpc))
    raw = json.dumps(m.as_json(), ensure_ascii=False, indent=1).encode()
    tmp = dest / f".{MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest / MANIFEST)  # last: a folder with a manifest is a complete backup
    return m


def _pg_tool(name: str) -> str:
    """pg_dump / pg_restore: the newest installed (it must be at least the server's version)."""
    import glob

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    tool = found[-1] if found else shutil.which(name)
    if not tool:
        raise BackupError(f"{name} is not installed (Debian package postgresql-client); it is needed for the "
                          "alert store on PostgreSQL")
    return tool


def _pg_schema(url: str) -> int:
    """The store's schema version: opening it brings an older one up to this program's."""
    from alerts.store import open_store
    from alerts.store.pg_migrations import LATEST

    try:
        open_store(url).close()
    except Exception as exc:
        raise BackupError(f"the alert store at SC_STORE_URL does not answer ({exc}); nothing backed up") from None
    return LATEST


def _backup_postgres(url: str, dest: Path, m: Manifest) -> None:
    out = dest / PG_DUMP
    _private_dir(out.parent)
    _run_tool([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(out), url],
                 "pg_dump of the alert store")
    os.chmod(out, PRIVATE_FILE)
    m.entries.append(Entry(PG_DUMP, "postgres", None, out.stat().st_size, _sha256(out), "0600", "pg_dump"))


def _restore_postgres(settings: Settings, src: Path, aside: Path) -> str:
    url = postgres_url(settings.store_url)
    if url is None:
        raise BackupError("the backup holds an alert store on PostgreSQL: set SC_STORE_URL=postgresql://… to the "
                          "database to restore it into; nothing restored")
    from alerts.store import open_store

    try:
        store = open_store(url)
    except Exception as exc:
        raise BackupError(f"the alert store at SC_STORE_URL does not answer ({exc}); nothing restored") from None
    try:
        held = [r for r in store.leases() if r["expires"] > r["now"]]
    finally:
        store.close()
    if held:
        who = ", ".join(f"{r['name']} by {r['holder']}" for r in held)
        raise BackupError(f"an alert engine runs on this store ({who}): stop every host's engine before "
                          "restoring; nothing restored")
    _private_dir(aside)
    kept = aside / "postgres-store.dump"
    _run_tool([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(kept), url],
                 "pg_dump of the store being replaced")
    os.chmod(kept, PRIVATE_FILE)
    _run_tool([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                  "--single-transaction", "--dbname", url, str(src / PG_DUMP)], "pg_restore of the alert store")
    return f"alert store restored into PostgreSQL (what it held before: {kept})"


def _backup_influx(settings: Settings, dest: Path, m: Manifest, rpc: str) -> None:
    from core.influx import InfluxUnavailable

    try:
        present = settings.influx_db in _databases(settings)
    except InfluxUnavailable as exc:
        raise BackupError(f"InfluxDB at {settings.influx_url} does not answer ({exc}); start the system (or "
                          "`smartcommunity services start`), or pass --skip-influx to leave the time series out"
                          ) from None
    out = dest / "influxdb"
    _private_dir(out)
    if present:
        _run_tool([_influxd(), "backup", "-portable", "-host", rpc, "-db", settings.influx_db, str(out)],
                     f"influxd backup of {settings.influx_db} through {rpc}")
    for p in sorted(out.rglob("*")):
        if p.is_file():
            os.chmod(p, PRIVATE_FILE)
            rel = p.relative_to(dest).as_posix()
            m.entries.append(Entry(rel, "influxdb", None, p.stat().st_size, _sha256(p), "0600", "influxd"))


# --------------------------------------------------------------------------------------------- restore

def read_manifest(src: Path) -> dict[str, Any]:
    """The backup's manifest, every file checked against it; BackupError names each that is wrong."""
    path = src / MANIFEST
    if not src.is_dir():
        raise BackupError(f"{src} is not a folder")
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{src} has no {MANIFEST}: not a backup, or one that did not finish") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError(f"{path} is not a smartcommunity backup manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{path}: backup format {doc.get('format_version')!r}; this program reads {FORMAT_VERSION}")
    files = doc.get("files")
    if not isinstance(files, list):
        raise BackupError(f"{path}: no list of files")
    problems: list[str] = []
    root = src.resolve()
    for e in files:
        rel = e.get("path") if isinstance(e, dict) else None
        if not isinstance(rel, str) or not (root / rel).resolve().is_relative_to(root) or Path(rel).is_absolute():
            problems.append(f"bad entry {e!r}")
            continue
        if e.get("root") not in ("data", "external", "influxdb", "postgres"):
            problems.append(f"{rel}: unknown root {e.get('root')!r}")
            continue
        to = e.get("restore_to")
        inside = e["root"] == "data" and isinstance(to, str) and not Path(to).is_absolute() \
            and ".." not in Path(to).parts
        outside = e["root"] == "external" and isinstance(to, str) and Path(to).is_absolute()
        if not (inside or outside or e["root"] in ("influxdb", "postgres")):
            problems.append(f"{rel}: bad restore_to {to!r}")
            continue
        if not re.fullmatch(r"0?[0-7]{3}", str(e.get("mode"))):
            problems.append(f"{rel}: bad mode {e.get('mode')!r}")
            continue
        p = src / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_size != e.get("bytes"):
            problems.append(f"{rel}: {p.stat().st_size} bytes, the manifest says {e.get('bytes')}")
        elif _sha256(p) != e.get("sha256"):
            problems.append(f"{rel}: SHA-256 does not match the manifest (damaged or altered)")
    if problems:
        raise BackupError(f"{src}: the backup does not check out; nothing restored:\n  " + "\n  ".join(problems))
    return doc


def running_parts(settings: Settings) -> list[str]:
    """What of the system runs on this data dir: fresh heartbeats, a dashboard answering on its port."""
    from smartcommunity.services import port_open

    out = [hb["name"] for hb in heartbeat.read_all(settings.data_path, "") if hb["fresh"] and not hb.get("stopped")]
    if port_open("127.0.0.1", settings.http_port):
        out.append(f"something answers on the dashboard port {settings.http_port}")
    return out


@dataclass
class RestoreReport:
    restored: list[str] = field(default_factory=list)
    set_aside: Path | None = None
    influx: str = ""
    store: str = ""


def restore(settings: Settings, src: Path, influx_rpc: str | None = None) -> RestoreReport:
    """Bring a stopped system back from the backup in `src` (see the module's docstring)."""
    from alerts.migrations import LATEST

    src = src.resolve()
    doc = read_manifest(src)
    schema = (doc.get("schema") or {}).get("alert_store")
    if isinstance(schema, int) and schema > LATEST:
        raise BackupError(f"the backup's alert store is at schema {schema}, newer than this program ({LATEST}): "
                          "install the version that made it")
    busy = running_parts(settings)
    if busy:
        raise BackupError("the system is running on this data dir (" + ", ".join(busy) + "): stop it "
                          "(`up`, `services stop`) before restoring; nothing restored")
    data = settings.data_path
    _private_dir(data)
    stamp = beijing().strftime("%Y%m%d-%H%M%S")
    aside = data / f"{SKIP_DIR_PREFIX}{stamp}"
    report = RestoreReport()
    if any(e["root"] == "postgres" for e in doc["files"]):
        report.store = _restore_postgres(settings, src, aside)
    for e in doc["files"]:
        if e["root"] in ("influxdb", "postgres"):
            continue
        target = data / e["restore_to"] if e["root"] == "data" else Path(e["restore_to"])
        keep = aside / e["restore_to"] if e["root"] == "data" else target.with_name(f"{target.name}.{aside.name}")
        _put_back(src / e["path"], target, int(e.get("mode", "0600"), 8), keep)
        report.restored.append(str(target))
    if aside.exists():
        report.set_aside = aside
    if doc.get("influx_db"):
        try:
            report.influx = _restore_influx(settings, src, doc["influx_db"], doc["files"], influx_rpc)
        except BackupError as exc:
            raise BackupError(f"{exc}\nThe files are restored, the time series are not: once InfluxDB is put "
                              "right, run the same restore again (files already in place are left alone)") from None
    return report


def _put_back(src: Path, target: Path, mode: int, keep: Path) -> None:
    # A SQLite file's old -wal / -shm would be replayed onto the restored file: they go with the old file.
    sides = [target.with_name(target.name + s) for s in ("-wal", "-shm", "-journal")]
    if target.is_file() and _sha256(target) == _sha256(src) and not any(p.exists() for p in sides):
        return
    for old in [target, *sides]:
        if old.exists():
            if not keep.parent.exists():
                _private_dir(keep.parent)
            os.replace(old, keep.with_name(keep.name + old.name.removeprefix(target.name)))
    if not target.parent.exists():
        _private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.restore.tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode & 0o700 if mode & 0o700 else PRIVATE_FILE)  # never wider than its owner
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def _restore_influx(settings: Settings, src: Path, backed_db: str, files: list[dict[str, Any]],
                    influx_rpc: str | None) -> str:
    from core.influx import InfluxUnavailable
    from smartcommunity.services import ServiceError, needs_start, start_influxdb

    if not any(e["root"] == "influxdb" and e["path"].endswith(".manifest") for e in files):
        return f"the backup holds no time series ({backed_db} had no data)"
    started = None
    try:
        if needs_start(settings.influx):
            started = start_influxdb(settings)
    except ServiceError as exc:
        raise BackupError(f"cannot start InfluxDB to restore the time series: {exc}") from None
    try:
        rpc = influxdb_rpc(settings, influx_rpc)
        try:
            present = settings.influx_db in _databases(settings)
        except InfluxUnavailable as exc:
            raise BackupError(f"InfluxDB at {settings.influx_url} does not answer: {exc}") from None
        base = [_influxd(), "restore", "-portable", "-host", rpc, "-db", backed_db]
        if not present:
            _run_tool([*base, "-newdb", settings.influx_db, str(src / "influxdb")],
                         f"influxd restore of {backed_db} through {rpc}")
            _wait_enabled(settings, settings.influx_db)
            return f"time series restored into {settings.influx_db}"
        return _merge_influx(settings, src, base, rpc)
    finally:
        if started is not None:
            started.stop()


SHARD_WAIT_S = 120.0
TRANSIENT = ("shard is disabled", "engine is closed")  # a restored shard still opening


def _settled(client: Any, q: str, what: str, quiet_s: float = 0.0) -> None:
    """Run `q` until it answers, through the moments after `influxd restore` returns while the restored shards
    are still being opened ("shard is disabled", "engine is closed": influxdata/influxdb#11935); with
    `quiet_s`, until it has kept answering that long."""
    from core.influx import InfluxRejected

    deadline = time.monotonic() + SHARD_WAIT_S
    ok_since: float | None = None
    while True:
        try:
            client.query(q, db=False, epoch=None)
            ok_since = ok_since or time.monotonic()
            if time.monotonic() - ok_since >= quiet_s:
                return
        except InfluxRejected as exc:
            ok_since = None
            if not any(t in exc.error for t in TRANSIENT) or time.monotonic() > deadline:
                raise BackupError(f"{what}: {exc.error}") from None
        time.sleep(0.25)


def _wait_enabled(settings: Settings, db: str) -> None:
    """Wait until the restored database `db` reads, steadily."""
    from core.influx import quote_ident

    client = _admin_client(settings)
    try:
        _settled(client, f"SELECT * FROM {quote_ident(db)}../.*/ LIMIT 1", f"the restored database {db} does not read",
                 quiet_s=2.0)
    finally:
        client.close()


def _merge_influx(settings: Settings, src: Path, base: list[str], rpc: str) -> str:
    """The database exists already (e.g. made at start-up under SC_SECURE): restore beside it, copy every
    retention policy's points in (InfluxDB's documented way to restore into an existing database), drop the copy."""
    from core.influx import quote_ident

    tmp = f"{settings.influx_db}_restore_{os.getpid()}"
    _run_tool([*base, "-newdb", tmp, str(src / "influxdb")], f"influxd restore through {rpc}")
    _wait_enabled(settings, tmp)
    client = _admin_client(settings)
    client.timeout_s = 600.0
    try:
        have = {r["name"] for r in client.rows(f"SHOW RETENTION POLICIES ON {quote_ident(settings.influx_db)}")}
        for rp in client.rows(f"SHOW RETENTION POLICIES ON {quote_ident(tmp)}"):
            name = rp["name"]
            if name not in have:
                client.query(f"CREATE RETENTION POLICY {quote_ident(name)} ON {quote_ident(settings.influx_db)} "
                             f"DURATION {rp['duration']} REPLICATION 1", db=False, epoch=None)
            # Idempotent (the same points land on the same series and times), so safe to retry.
            _settled(client, f"SELECT * INTO {quote_ident(settings.influx_db)}.{quote_ident(name)}.:MEASUREMENT "
                     f"FROM {quote_ident(tmp)}.{quote_ident(name)}./.*/ GROUP BY *",
                     f"copying the restored points of {name} into {settings.influx_db}")
        client.query(f"DROP DATABASE {quote_ident(tmp)}", db=False, epoch=None)
    finally:
        client.close()
    return f"time series merged into the existing database {settings.influx_db}"


# ------------------------------------------------------------------------------------------------ verbs

def register(sub: Any) -> None:
    p = sub.add_parser("backup", help="back up everything needed to bring the system back, while it runs")
    p.add_argument("dir", type=Path, help="a new or empty folder (on another disk)")
    p.add_argument("--influx-rpc", metavar="HOST:PORT",
                   help="InfluxDB's backup service (default: that of the InfluxDB `up` started, else port 8088)")
    p.add_argument("--skip-influx", action="store_true", help="leave the time series out (backed up elsewhere)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="bring a stopped system back from a backup folder")
    p.add_argument("dir", type=Path)
    p.add_argument("--influx-rpc", metavar="HOST:PORT", help="as for backup")
    p.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    try:
        m = backup(settings, args.dir, args.influx_rpc, args.skip_influx)
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"smartcommunity backup: {exc}", file=sys.stderr)
        print(f"smartcommunity backup: {args.dir} is NOT a usable backup", file=sys.stderr)
        return 1
    total = sum(e.bytes for e in m.entries)
    influx = sum(1 for e in m.entries if e.root == "influxdb")
    print(f"backed up {len(m.entries)} files ({total / 1e6:.1f} MB; {influx} of InfluxDB) into {args.dir}")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = restore(settings, args.dir, args.influx_rpc)
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"smartcommunity restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {len(report.restored)} files into {settings.data_path}")
    if report.set_aside:
        print(f"the files it replaced are in {report.set_aside}")
    if report.store:
        print(report.store)
    if report.influx:
        print(report.influx)
    print("start the system with `smartcommunity up`")
    return 0
