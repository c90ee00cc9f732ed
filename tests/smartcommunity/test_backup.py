"""`smartcommunity backup` / `restore`: a consistent copy while the system writes, refusals, InfluxDB both ways,
and the whole round trip with a real `up` (alerts raised, backed up live, data dir wiped, restored, up again)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import requests

from alerts.store import AlertStore, store_path
from core import heartbeat
from core.influx import InfluxClient, InfluxRejected
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from smartcommunity.backup import MANIFEST, BackupError, backup, read_manifest, restore
from smartcommunity.services import RunningService, free_port, influxdb_rpc_address, port_open
from tests.conftest import Collector, make_settings, wait_until
from tests.smartcommunity.test_up import launch_up


def seed_data_dir(tmp_path: Path) -> Settings:
    """A stopped system's data dir: an alert store, a secret, an outbox with a half-written last line."""
    s = make_settings(tmp_path / "var", influx_url=f"http://127.0.0.1:{free_port()}")
    AlertStore(store_path(s.data_path)).close()
    secret = s.secrets_path / "influx" / "sc_admin"
    secret.parent.mkdir(parents=True)
    secret.write_text("pw\n")
    os.chmod(secret, 0o600)
    (s.data_path / "alerts" / "outbox.jsonl").write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3, "half')
    (s.data_path / "audit.jsonl").write_bytes(b'{"only a half line')
    ensure_registry(s)
    return s


def test_backup_then_restore_without_influx(tmp_path: Path) -> None:
    s = seed_data_dir(tmp_path)
    (s.data_path / "run").mkdir()
    (s.data_path / "run" / "ingest.json").write_text("{}")  # a heartbeat: not backed up
    m = backup(s, tmp_path / "bk", skip_influx=True)
    kept = {e.restore_to: e for e in m.entries}
    assert {"alerts/alerts.sqlite", "secrets/influx/sc_admin", "alerts/outbox.jsonl",
            "registry/devices.geojson"} <= set(kept)
    assert "run/ingest.json" not in kept
    assert kept["alerts/alerts.sqlite"].how == "sqlite" and kept["secrets/influx/sc_admin"].mode == "0600"
    assert stat.S_IMODE((tmp_path / "bk").stat().st_mode) == 0o700
    doc = json.loads((tmp_path / "bk" / MANIFEST).read_text())
    assert doc["schema"]["alert_store"] >= 7 and doc["total_bytes"] > 0
    assert all(len(f["sha256"]) == 64 for f in doc["files"])
    assert (tmp_path / "bk" / "data/alerts/outbox.jsonl").read_bytes() == b'{"n": 1}\n{"n": 2}\n'  # whole lines
    assert (tmp_path / "bk" / "data/audit.jsonl").read_bytes() == b""

    shutil.rmtree(s.data_path)
    report = restore(s, tmp_path / "bk")
    secret = s.secrets_path / "influx" / "sc_admin"
    assert secret.read_text() == "pw\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert report.set_aside is None  # nothing was there to replace
    assert len(load_registry(s.registry_path)) > 100

    # Restoring over a changed store keeps the replaced file aside.
    (s.data_path / "alerts" / "alerts.sqlite").write_bytes(b"not the same")
    report = restore(s, tmp_path / "bk")
    assert report.set_aside is not None
    assert (report.set_aside / "alerts" / "alerts.sqlite").read_bytes() == b"not the same"
    AlertStore(store_path(s.data_path)).close()  # the restored store opens


def test_restore_refuses_a_damaged_or_incomplete_backup(tmp_path: Path) -> None:
    s = seed_data_dir(tmp_path)
    backup(s, tmp_path / "bk", skip_influx=True)
    target = s.data_path / "alerts" / "alerts.sqlite"
    before = target.read_bytes()

    copy = tmp_path / "bk" / "data" / "alerts" / "alerts.sqlite"
    raw = bytearray(copy.read_bytes())
    raw[200] ^= 0xFF
    copy.write_bytes(bytes(raw))
    with pytest.raises(BackupError, match=r"data/alerts/alerts.sqlite: SHA-256 does not match"):
        restore(s, tmp_path / "bk")
    copy.write_bytes(bytes(raw[:-1]))
    with pytest.raises(BackupError, match=r"alerts.sqlite: \d+ bytes, the manifest says"):
        restore(s, tmp_path / "bk")
    copy.unlink()
    with pytest.raises(BackupError, match=r"alerts\.sqlite: missing"):
        restore(s, tmp_path / "bk")

    doc = json.loads((tmp_path / "bk" / MANIFEST).read_text())
    doc["files"] = [{**doc["files"][0], "path": "../../etc/passwd"}]
    (tmp_path / "bk" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(BackupError, match="bad entry"):
        read_manifest(tmp_path / "bk")
    doc["files"] = [{**doc["files"][0], "path": "data/registry/devices.geojson", "restore_to": "../../x"}]
    (tmp_path / "bk" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(BackupError, match="bad restore_to"):
        read_manifest(tmp_path / "bk")
    doc["files"] = [{**doc["files"][0], "root": "external", "restore_to": "relative/x"}]
    (tmp_path / "bk" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(BackupError, match="bad restore_to"):
        read_manifest(tmp_path / "bk")
    (tmp_path / "bk" / MANIFEST).write_text("{not json")
    with pytest.raises(BackupError, match="unreadable"):
        restore(s, tmp_path / "bk")
    (tmp_path / "bk" / MANIFEST).unlink()
    with pytest.raises(BackupError, match=r"has no manifest\.json: not a backup, or one that did not finish"):
        restore(s, tmp_path / "bk")
    assert target.read_bytes() == before  # nothing was touched


def test_restore_refuses_while_the_system_runs(tmp_path: Path) -> None:
    s = seed_data_dir(tmp_path)
    backup(s, tmp_path / "bk", skip_influx=True)
    heartbeat.write(s.data_path, "alerts", {})
    with pytest.raises(BackupError, match=r"the system is running on this data dir \(alerts\)"):
        restore(s, tmp_path / "bk")
    heartbeat.write(s.data_path, "alerts", {"stopped": True})  # a part that stopped cleanly says so
    restore(s, tmp_path / "bk")


def test_backup_refuses_a_used_folder_and_a_silent_influxdb(tmp_path: Path) -> None:
    s = seed_data_dir(tmp_path)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(BackupError, match="is not empty"):
        backup(s, tmp_path / "used", skip_influx=True)
    with pytest.raises(BackupError, match="inside SC_DATA_DIR"):
        backup(s, s.data_path / "bk", skip_influx=True)
    with pytest.raises(BackupError, match=r"InfluxDB at .* does not answer .*--skip-influx"):
        backup(s, tmp_path / "bk")
    assert not (tmp_path / "bk" / MANIFEST).exists()  # no manifest: not mistaken for a backup


def test_sqlite_copy_is_consistent_while_a_writer_writes(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    db_path = s.data_path / "deadletter" / "deadletter.sqlite"
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    stop = threading.Event()

    def write() -> None:  # every transaction writes a and b equal: a torn copy would show a != b
        n = 0
        while not stop.is_set():
            n += 1
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (a, b) VALUES (?, ?)", (f"x{n}" * 50, f"x{n}" * 50))
            db.execute("UPDATE t SET a = ?, b = ? WHERE id % 7 = ?", (f"u{n}", f"u{n}", n % 7))
            db.execute("COMMIT")

    th = threading.Thread(target=write)
    th.start()
    try:
        time.sleep(0.3)
        backup(s, tmp_path / "bk", skip_influx=True)
    finally:
        stop.set()
        th.join()
        db.close()
    copy = sqlite3.connect(tmp_path / "bk" / "data" / "deadletter" / "deadletter.sqlite")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM t").fetchone()[0] > 0
    assert copy.execute("SELECT count(*) FROM t WHERE a != b").fetchone()[0] == 0
    assert not (tmp_path / "bk" / "data" / "deadletter" / "deadletter.sqlite-wal").exists()


def points(client: InfluxClient) -> list[dict[str, Any]]:
    return client.rows("SELECT * FROM gas ORDER BY time")


def test_influx_restores_into_a_missing_and_into_an_existing_database(
    tmp_path: Path, influxd: RunningService, services_dir: Path
) -> None:
    """The session's real InfluxDB, its backup service found in the conf `start_influxdb` wrote."""
    rpc = influxdb_rpc_address(make_settings(services_dir, influx_url=f"http://127.0.0.1:{influxd.url.port}"))
    assert rpc and rpc.startswith("127.0.0.1:")
    db = f"bk_{uuid.uuid4().hex[:8]}"
    s = make_settings(tmp_path / "var", influx_url=f"http://127.0.0.1:{influxd.url.port}", influx_db=db)
    s.data_path.mkdir(parents=True)
    client = InfluxClient(s.influx_url, db)
    client.create_database()
    t0 = int(time.time() * 1000) - 60_000
    client.write(b"\n".join(f"gas,device_id=G-1 lel_pct={i}.5 {t0 + i}".encode() for i in range(100)))
    m = backup(s, tmp_path / "bk", influx_rpc=rpc)
    assert any(e.root == "influxdb" for e in m.entries)
    before = points(client)
    assert len(before) == 100

    client.query(f'DROP DATABASE "{db}"', db=False, epoch=None)
    report = restore(s, tmp_path / "bk", influx_rpc=rpc)
    assert report.influx == f"time series restored into {db}"
    assert points(client) == before

    # The database exists (as `up` under SC_SECURE makes it): merged in, the temporary copy dropped.
    client.query(f'DROP DATABASE "{db}"', db=False, epoch=None)
    client.create_database()
    client.write(f"gas,device_id=G-2 lel_pct=1 {t0 + 500}".encode())
    report = restore(s, tmp_path / "bk", influx_rpc=rpc)
    assert report.influx == f"time series merged into the existing database {db}"
    after = points(client)
    assert [r for r in after if r["device_id"] == "G-1"] == before and len(after) == 101
    dbs = {r["name"] for r in client.rows("SHOW DATABASES")}
    assert not [d for d in dbs if d.startswith(f"{db}_restore")]
    client.query(f'DROP DATABASE "{db}"', db=False, epoch=None)
    client.close()


def cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smartcommunity", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/api/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_backup_while_up_runs_then_restore_on_a_wiped_machine(tmp_path: Path) -> None:
    ports = {"mqtt": free_port(), "influx": free_port(), "http": free_port()}
    proc, env = launch_up(tmp_path, ports, SC_ALERT_HOLDOFF_S="600")
    base = f"http://127.0.0.1:{ports['http']}"
    data = Path(env["SC_DATA_DIR"])
    try:
        assert wait_until(lambda: healthy(base), 90, every=0.5), (tmp_path / "up.log").read_text()[-3000:]
        settings = make_settings(data, mqtt_url=env["SC_MQTT_URL"], influx_url=env["SC_INFLUX_URL"])
        gas = sorted((d for d in load_registry(ensure_registry(settings)).values() if d.kind == "gas"),
                     key=lambda d: d.device_id)[:2]
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-backup-pub")
        pub.connect("127.0.0.1", ports["mqtt"])
        pub.loop_start()
        t0 = int(time.time() * 1000) - 5_000
        for i, dev in enumerate(gas):
            for k in range(3):
                lel = 31 + i if k == 2 else 2.0 + k
                pub.publish(f"sc/{dev.community}/gas/{dev.device_id}/telemetry",
                            orjson.dumps({"ts": t0 + 1000 * k, "m": {"lel_pct": lel}}), qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()

        def open_alerts() -> list[dict[str, Any]]:
            got = requests.get(f"{base}/api/alerts", timeout=5).json()
            return [a for a in got if a["rule"] == "gas_lel_high" and a["state"] != "resolved"]

        assert wait_until(lambda: len(open_alerts()) == 2, 30, every=0.5)
        first = open_alerts()[-1]
        r = requests.post(f"{base}/api/alerts/{first['alert_id']}/ack",
                          json={"by": "值班员 王", "note": "已通知燃气公司"}, timeout=5)
        assert r.status_code == 200, r.text
        influx = InfluxClient(env["SC_INFLUX_URL"], "smartcommunity")
        ids = "', '".join(d.device_id for d in gas)
        query = f"SELECT lel_pct, device_id FROM gas WHERE device_id = '{gas[0].device_id}' OR " \
                f"device_id = '{gas[1].device_id}' ORDER BY time"
        assert wait_until(lambda: len(influx.rows(query)) == 6, 20), ids
        points_before = influx.rows(query)
        influx.close()
        alerts_before = {a["alert_id"]: requests.get(f"{base}/api/alerts/{a['alert_id']}", timeout=5).json()
                         for a in open_alerts()}
        assert len(alerts_before) == 2 and all(a["timeline"] for a in alerts_before.values())

        # Backed up while everything runs; a restore is refused meanwhile.
        done = cli(env, "backup", tmp_path / "backup")
        assert done.returncode == 0, done.stderr
        assert "InfluxDB" in done.stdout
        manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
        held = {f["restore_to"]: f for f in manifest["files"] if f["root"] == "data"}
        assert held["alerts/alerts.sqlite"]["how"] == "sqlite"
        assert held["dashboard.secret"]["mode"] == "0600"  # the sign-in cookies' key: staff stay signed in
        assert any(f["root"] == "influxdb" for f in manifest["files"])
        refused = cli(env, "restore", tmp_path / "backup")
        assert refused.returncode == 1 and "the system is running" in refused.stderr, refused.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    shutil.rmtree(data)  # the disk is gone
    done = cli(env, "restore", tmp_path / "backup")
    assert done.returncode == 0, done.stderr
    assert "time series restored into smartcommunity" in done.stdout
    assert not port_open("127.0.0.1", ports["influx"])  # the InfluxDB it started for the restore is stopped

    proc, env = launch_up(tmp_path, ports, SC_ALERT_HOLDOFF_S="600")
    try:
        assert wait_until(lambda: healthy(base), 90, every=0.5), (tmp_path / "up.log").read_text()[-3000:]
        for alert_id, before in alerts_before.items():
            now = requests.get(f"{base}/api/alerts/{alert_id}", timeout=5).json()
            assert now["state"] == before["state"] and now["value"] == before["value"]
            assert now["timeline"][:len(before["timeline"])] == before["timeline"]
        acked = requests.get(f"{base}/api/alerts/{first['alert_id']}", timeout=5).json()
        assert acked["state"] == "acknowledged"
        assert any(st.get("note") == "已通知燃气公司" for st in acked["timeline"])
        influx = InfluxClient(env["SC_INFLUX_URL"], "smartcommunity")
        assert influx.rows(query) == points_before
        influx.close()
        # On-call tools see the open alerts again: retained on the new broker, re-published from the store.
        bus = Collector(make_settings(data, mqtt_url=env["SC_MQTT_URL"]), "sc/alerts/#")
        try:
            assert bus.wait_for(lambda msgs: {orjson.loads(p)["alert_id"] for _, p, retained in msgs
                                              if retained and p} >= set(alerts_before), 20)
        finally:
            bus.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_configuration_outside_the_data_dir_comes_back_to_its_place(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "smartcommunity.toml"
    conf.parent.mkdir()
    conf.write_text('influx_db = "smartcommunity"\n')
    rules = tmp_path / "etc" / "rules.yaml"
    rules.write_text("rules: []\n")
    s = make_settings(tmp_path / "var", influx_url=f"http://127.0.0.1:{free_port()}", config=str(conf),
                      alerts_rules_file=str(rules))
    AlertStore(store_path(s.data_path)).close()
    m = backup(s, tmp_path / "bk", skip_influx=True)
    assert {e.restore_to for e in m.entries if e.root == "external"} == {str(conf), str(rules)}

    conf.unlink()  # a new machine: not there at all
    rules.write_text("rules: [edited after the backup]\n")  # this machine: changed since
    restore(s, tmp_path / "bk")
    assert conf.read_text() == 'influx_db = "smartcommunity"\n'
    assert rules.read_text() == "rules: []\n"
    aside = [p for p in rules.parent.iterdir() if p.name.startswith("rules.yaml.pre-restore-")]
    assert len(aside) == 1 and aside[0].read_text() == "rules: [edited after the backup]\n"


def test_secure_influxdb_round_trip_on_a_new_machine(tmp_path: Path) -> None:
    """SC_SECURE: InfluxDB with auth on. The restore starts InfluxDB as `up` does, which makes the admin
    from the restored secret and the database at once; the backup's points are merged into it."""
    from core.accounts import INFLUX_ADMIN
    from core.influx import client_for
    from smartcommunity.services import start_influxdb

    s = make_settings(tmp_path / "var", secure=True, influx_url=f"http://127.0.0.1:{free_port()}", influx_db="sc")
    svc = start_influxdb(s)
    try:
        admin = client_for(s, account=INFLUX_ADMIN)
        t0 = int(time.time() * 1000) - 60_000
        admin.write(b"\n".join(f"gas,device_id=G-7 lel_pct={i} {t0 + i}".encode() for i in range(50)))
        before = points(admin)
        assert len(before) == 50
        m = backup(s, tmp_path / "bk")  # backup service found in the conf `start_influxdb` wrote
        assert any(e.root == "influxdb" for e in m.entries)
        assert any(e.restore_to == f"secrets/influx/{INFLUX_ADMIN}" and e.mode == "0600" for e in m.entries)
        admin.close()
    finally:
        svc.stop()

    shutil.rmtree(s.data_path)
    report = restore(s, tmp_path / "bk")
    assert report.influx == "time series merged into the existing database sc"
    svc = start_influxdb(s)
    try:
        admin = client_for(s, account=INFLUX_ADMIN)
        assert points(admin) == before
        anonymous = InfluxClient(s.influx_url, "sc")
        with pytest.raises(InfluxRejected, match="authentication"):  # auth is still on
            anonymous.rows("SELECT * FROM gas")
        anonymous.close()
        admin.close()
    finally:
        svc.stop()


def test_restore_says_what_is_back_when_influxdb_cannot_be_reached(tmp_path: Path) -> None:
    s = seed_data_dir(tmp_path)
    backup(s, tmp_path / "bk", skip_influx=True)
    # A backup holding time series (a stand-in portable manifest), restored where InfluxDB is another,
    # unreachable host (TEST-NET-1): not started here, so the time series cannot go back.
    fake = tmp_path / "bk" / "influxdb" / "20261203T000000Z.manifest"
    fake.parent.mkdir()
    fake.write_text("{}")
    doc = json.loads((tmp_path / "bk" / MANIFEST).read_text())
    doc["influx_db"] = "smartcommunity"
    doc["files"].append({"path": "influxdb/20261203T000000Z.manifest", "root": "influxdb", "restore_to": None,
                         "bytes": 2, "sha256": hashlib.sha256(b"{}").hexdigest(), "mode": "0600", "how": "influxd"})
    (tmp_path / "bk" / MANIFEST).write_text(json.dumps(doc))
    shutil.rmtree(s.data_path)
    far = make_settings(s.data_path, influx_url="http://192.0.2.1:8086")
    with pytest.raises(BackupError, match=r"(?s)cannot start InfluxDB.*The files are restored, the time series"):
        restore(far, tmp_path / "bk")
    assert (s.data_path / "alerts" / "alerts.sqlite").exists()


def test_odd_folder_names_and_a_file_gone_during_the_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import smartcommunity.backup as bk

    s = make_settings(tmp_path / "var #1?%20", influx_url=f"http://127.0.0.1:{free_port()}")
    AlertStore(store_path(s.data_path)).close()  # a SQLite file whose path needs URI quoting
    seg = s.data_path / "spool" / "ingest-0" / "000001.seg"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(b"x" * 100)
    walk = bk._data_files

    def racing(data: Path):  # type: ignore[no-untyped-def]
        files = list(walk(data))
        seg.unlink()  # replayed and removed by ingest after the walk saw it
        yield from files

    monkeypatch.setattr(bk, "_data_files", racing)
    m = backup(s, tmp_path / "bk", skip_influx=True)
    held = {e.restore_to for e in m.entries}
    assert "alerts/alerts.sqlite" in held and "spool/ingest-0/000001.seg" not in held
    copy = sqlite3.connect(tmp_path / "bk" / "data" / "alerts" / "alerts.sqlite")
    assert copy.execute("SELECT count(*) FROM sqlite_master WHERE name = 'alerts'").fetchone()[0] == 1  # not empty
    copy.close()
    read_manifest(tmp_path / "bk")  # and it checks out
