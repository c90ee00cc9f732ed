"""`smartcommunity backup` / `restore` with the alert store on PostgreSQL (`SC_STORE_URL`): the database
(alerts, timelines, accounts, sessions) dumped while it is written, brought back into a wiped database
with what it held kept aside, a damaged dump refused, and no restore under a running engine."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest

from alerts.store import Store, open_store
from core.contract import Alert
from core.settings import Settings
from core.staff import open_accounts
from dashboard.sessions import open_sessions
from smartcommunity.backup import PG_DUMP, BackupError, backup, restore
from tests.conftest import make_settings


def an_alert() -> Alert:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    dev = f"G-{uuid.uuid4().hex[:6]}"
    return Alert(f"a-{uuid.uuid4().hex[:12]}", "gas_lel_high", "red", "active", "yanhu", None, dev, "gas",
                 "lel_pct", 62.0, 25.0, None, None, now, now, "燃气浓度 62.0 %LEL ≥ 25 %LEL")


def wipe(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP SCHEMA public CASCADE")
        db.execute("CREATE SCHEMA public")


def with_an_alert(tmp_path: Path, pg_url: str) -> tuple[Settings, Store, Alert]:
    """A system whose store is the PostgreSQL database `pg_url`, with an open alert in it."""
    s = make_settings(tmp_path / "var", store_url=pg_url)
    s.data_path.mkdir(parents=True)
    store = open_store(pg_url)
    a = an_alert()
    store.insert(a, a.device_id)
    return s, store, a


def test_postgres_store_backed_up_and_restored_into_a_wiped_database(tmp_path: Path, pg_url: str) -> None:
    s, store, a = with_an_alert(tmp_path, pg_url)
    store.acknowledge(a.alert_id, "张三", "去现场", a.updated_at)
    store.close()
    open_accounts(s).add("zhang", "张三", "correct horse", role="operator")
    token, _ = open_sessions(s).create("zhang")

    m = backup(s, tmp_path / "bk", skip_influx=True)
    dump = [e for e in m.entries if e.root == "postgres"]
    assert [e.path for e in dump] == [PG_DUMP] and dump[0].how == "pg_dump" and dump[0].bytes > 1000
    assert m.alert_store_schema is not None and m.alert_store_schema >= 12

    wipe(pg_url)  # the database lost
    report = restore(s, tmp_path / "bk")
    assert "PostgreSQL" in report.store and report.set_aside is not None
    assert (report.set_aside / "postgres-store.dump").stat().st_size > 0  # what it held before, kept
    store = open_store(pg_url)
    try:
        back = store.get(a.alert_id)
        assert back is not None and back.acked_by == "张三"
        assert [st.event for st in store.timeline(a.alert_id)][:2] == ["raised", "acknowledged"]
        assert store.lease("alerts", "host-a", 5) == 1  # the restored store takes writes
    finally:
        store.close()
    assert open_accounts(s).authenticate("zhang", "correct horse") is not None
    assert open_sessions(s).get(token) is not None


def test_a_damaged_dump_or_a_running_engine_restores_nothing(tmp_path: Path, pg_url: str) -> None:
    s, store, _a = with_an_alert(tmp_path, pg_url)
    backup(s, tmp_path / "bk", skip_influx=True)

    b = an_alert()
    store.insert(b, b.device_id)  # written after the backup
    assert store.lease("alerts", "host-a", 60) == 1  # an engine runs
    with pytest.raises(BackupError, match="engine runs"):
        restore(s, tmp_path / "bk")
    assert store.get(b.alert_id) is not None  # nothing restored
    store.release_lease("alerts", "host-a")

    raw = (tmp_path / "bk" / PG_DUMP).read_bytes()
    (tmp_path / "bk" / PG_DUMP).write_bytes(raw[:-10] + b"0123456789")
    with pytest.raises(BackupError, match="SHA-256"):
        restore(s, tmp_path / "bk")
    assert store.get(b.alert_id) is not None
    store.close()

    (tmp_path / "bk" / PG_DUMP).write_bytes(raw)
    with pytest.raises(BackupError, match="SC_STORE_URL"):
        restore(make_settings(tmp_path / "other"), tmp_path / "bk")  # a SQLite system: said, not half done
