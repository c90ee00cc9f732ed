"""Dead letters cannot fill the disk (issue 12: 23 unauthenticated 1 MB payloads were stored whole,
+38 MB). Payloads are kept up to 16 KiB with their length and SHA-256; the store is bounded in bytes
as well as rows, oldest dropped first and counted; the file is 0600."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.contract import MAX_PAYLOAD_BYTES
from core.settings import Settings
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path
from ingest.service import Ingestor
from tests.conftest import wait_until

MB = 1024 * 1024


def _letter(i: int, payload: bytes) -> DeadLetter:
    return DeadLetter(f"sc/yanhu/gas/G-{i:06d}/telemetry", payload, "bad_json", "over 16 KiB", 1_790_000_000_000 + i)


def test_payload_kept_to_16_kib_with_length_and_hash(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "dl.sqlite", max_rows=1000, max_bytes=10 * MB)
    big = os.urandom(MB)
    small = b'{"ts": 1, "m": {}}'
    store.add_many([_letter(1, big), _letter(2, small)])
    rows = {r["topic"]: r for r in store.list()}
    b = rows["sc/yanhu/gas/G-000001/telemetry"]
    assert b["payload_bytes"] == MB and b["truncated"] is True
    assert b["payload_sha256"] == hashlib.sha256(big).hexdigest()
    assert len(bytes.fromhex(b["payload_sha256"])) == 32
    import base64

    assert base64.b64decode(b["payload_base64"]) == big[:MAX_PAYLOAD_BYTES]
    s = rows["sc/yanhu/gas/G-000002/telemetry"]
    assert s["payload"] == small.decode() and s["truncated"] is False and s["payload_bytes"] == len(small)
    store.close()
    assert stat.S_IMODE((tmp_path / "dl.sqlite").stat().st_mode) == 0o600


def test_store_bounded_in_bytes_oldest_first_and_counted(tmp_path: Path) -> None:
    bound = 100 * 1024
    store = DeadLetterStore(tmp_path / "dl.sqlite", max_rows=1_000_000, max_bytes=bound)
    for i in range(40):
        store.add_many([_letter(i, b"j" * (20 * 1024))])
    use = store.usage()
    assert use["bytes"] <= bound
    kept = [r["topic"] for r in store.list()]
    assert kept == [f"sc/yanhu/gas/G-{i:06d}/telemetry" for i in range(39, 39 - len(kept), -1)]  # newest kept
    assert use["rows"] == len(kept) and use["dropped"] == 40 - len(kept) and use["dropped_bytes"] > 0
    store.close()
    again = DeadLetterStore(tmp_path / "dl.sqlite", max_rows=1_000_000, max_bytes=bound)
    assert again.usage() == use  # the counters survive a restart
    again.close()


def test_older_store_is_migrated_and_made_private(tmp_path: Path) -> None:
    import sqlite3

    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p)
    db.executescript("""CREATE TABLE deadletter (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL,
        topic TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);""")
    db.execute("INSERT INTO deadletter(received_at, topic, payload, reason) VALUES ('t', 'a/b', ?, 'bad_json')",
               (b"x" * 5000,))
    db.commit()
    db.close()
    os.chmod(p, 0o644)
    store = DeadLetterStore(p, max_rows=10, max_bytes=10 * MB)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    (row,) = store.list()
    assert row["payload_bytes"] == 5000 and row["payload_sha256"] == hashlib.sha256(b"x" * 5000).hexdigest()
    assert store.usage()["bytes"] >= 5000
    store.close()


@pytest.fixture
def small_ingestor(settings: Settings) -> Iterator[Ingestor]:
    from dataclasses import replace

    ing = Ingestor(replace(settings, deadletter_max_bytes=2 * MB))
    ing.start()
    assert wait_until(lambda: ing.mqtt_ok, 10)
    time.sleep(0.3)
    yield ing
    ing.close()


def test_issue_probe_23_unauthenticated_1mb_payloads(settings: Settings, small_ingestor: Ingestor,
                                                      publisher) -> None:  # type: ignore[no-untyped-def]
    """The issue's probe on the default (loopback, anonymous) broker: 23 × 1 MB junk grows the
    dead-letter store by at most 23 × 16 KiB (+ overhead), not 23 MB, and every one is listed."""
    path = store_path(settings.data_path)
    before = sum(f.stat().st_size for f in path.parent.glob("deadletter.sqlite*"))
    devs = [d for _, d in sorted(small_ingestor.registry.current().items()) if d.kind == "gas"][:23]
    for d in devs:
        publisher.publish(f"sc/{d.community}/gas/{d.device_id}/telemetry", os.urandom(MB), qos=1)
    assert wait_until(lambda: small_ingestor.dead_by_reason["bad_json"] >= 23, 60), dict(small_ingestor.dead_by_reason)
    time.sleep(0.5)
    store = DeadLetterStore(path, settings.deadletter_max, 2 * MB)
    rows = [r for r in store.list() if r["reason"] == "bad_json"]
    store.close()
    assert len(rows) == 23 and all(r["payload_bytes"] == MB and r["truncated"] for r in rows)
    after = sum(f.stat().st_size for f in path.parent.glob("deadletter.sqlite*"))
    assert after - before < 23 * (MAX_PAYLOAD_BYTES + 4096) + 2 * MB  # WAL headroom; was +38 MB
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in path.parent.glob("deadletter.sqlite*"))
