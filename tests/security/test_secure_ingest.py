"""InfluxDB with authentication on (issue 12): the writer may only write, the reader only read,
anonymous nothing; ingest stores through the writer account, two workers each on their own broker
account (the secure broker gives an account one connection)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from core.accounts import INFLUX_ADMIN, INFLUX_READER, INFLUX_WRITER, MQTT_INGEST
from core.influx import InfluxClient, InfluxRejected, client_for
from core.secrets import SecretError, read_secret
from ingest.service import Ingestor
from tests.security.conftest import Probe, SecureStack, device_probe, wait_until


def test_influx_rights_are_least(secure: SecureStack) -> None:
    s = secure.settings
    now = int(time.time() * 1000)
    anon = InfluxClient(s.influx_url, s.influx_db)
    with pytest.raises(InfluxRejected) as e:
        anon.rows("SHOW MEASUREMENTS")
    assert e.value.status == 401
    with pytest.raises(InfluxRejected):
        anon.write(b"probe,device_id=x v=1 %d" % now)
    writer, reader = client_for(s, account=INFLUX_WRITER), client_for(s, account=INFLUX_READER)
    writer.write(b"probe,device_id=x v=1 %d" % now)
    assert reader.rows("SELECT v FROM probe")[0]["v"] == 1
    for attempt in (lambda: writer.rows("SELECT v FROM probe"),
                    lambda: writer.query("DROP MEASUREMENT probe", epoch=None),
                    lambda: writer.query(f'CREATE USER "evil{uuid.uuid4().hex[:4]}" WITH PASSWORD \'x\' '
                                         "WITH ALL PRIVILEGES", db=False, epoch=None),
                    lambda: reader.write(b"probe,device_id=x v=2 %d" % (now + 1)),
                    lambda: reader.query("DROP MEASUREMENT probe", epoch=None)):
        with pytest.raises(InfluxRejected) as e:
            attempt()
        assert e.value.status in (401, 403)
    assert reader.rows("SELECT v FROM probe")[0]["v"] == 1
    wrong = InfluxClient(s.influx_url.replace("http://", "http://sc_admin:nope@"), s.influx_db)
    with pytest.raises(InfluxRejected) as e:
        wrong.rows("SHOW USERS")
    assert e.value.status == 401
    admin = client_for(s, account=INFLUX_ADMIN)
    users = {r["user"]: r["admin"] for r in admin.rows("SHOW USERS")}
    assert users == {INFLUX_ADMIN: True, INFLUX_WRITER: False, INFLUX_READER: False}
    for c in (anon, writer, reader, wrong, admin):
        c.close()


def test_a_secret_file_readable_by_others_is_refused(secure: SecureStack, tmp_path: Path) -> None:
    s = replace(secure.settings, secrets_dir=str(tmp_path / "secrets"))
    f = tmp_path / "secrets" / "influx" / INFLUX_READER
    f.parent.mkdir(parents=True)
    f.write_text(read_secret(secure.settings, "influx", INFLUX_READER))
    f.chmod(0o644)
    with pytest.raises(SecretError, match="readable by others"):
        client_for(s, account=INFLUX_READER)


def test_two_ingest_workers_store_through_the_writer_account(secure: SecureStack, probes: list[Probe],
                                                             tmp_path: Path) -> None:
    s = replace(secure.settings, data_dir=str(tmp_path / "var"), registry_file=None,
                secrets_dir=str(secure.settings.secrets_path), mqtt_ca_file=str(secure.settings.ca_path),
                mqtt_account=MQTT_INGEST, influx_account=INFLUX_WRITER, ingest_flush_ms=50)
    workers = [Ingestor(s, worker=w, workers=2) for w in range(2)]
    threads = [threading.Thread(target=w.run_forever, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: all(w.mqtt_ok for w in workers), 15), "a worker could not connect"
        time.sleep(0.5)
        dev = secure.devices("gas", "yanling")[7]
        p = device_probe(secure, probes, dev)
        now = int(time.time() * 1000)
        for i in range(40):
            p.publish(f"sc/yanling/gas/{dev.device_id}/telemetry",
                      orjson.dumps({"ts": now + i * 100, "m": {"lel_pct": 1.0}}))
        reader = client_for(secure.settings, account=INFLUX_READER)

        def stored() -> int:
            rows = reader.rows(f"SELECT count(lel_pct) FROM gas WHERE device_id = '{dev.device_id}'")
            return int(rows[0]["count"]) if rows else 0

        assert wait_until(lambda: stored() == 40, 20), stored()
        assert sum(w.counters["received"] for w in workers) >= 40  # the shared subscription spreads them
        assert all(w.mqtt_ok for w in workers)  # neither knocked the other off
        reader.close()
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(30)
