"""Engines that take over from each other (alerts/lease.py): the lease in both store backends, and a
real standby process taking over from a killed one with the broker's queued messages and the store's
open alerts — nothing lost, nothing raised twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from alerts.lease import Lease
from alerts.store import open_store
from core.contract import TOPIC_ROOT, Device
from core.registry import system_registry
from core.settings import Settings
from core.validation import Telemetry
from ingest.forward import encode, records_topic
from tests.conftest import Collector, wait_until

ROOT = Path(__file__).resolve().parents[2]
TTL_S = 4.0  # the test's lease: short, so the drill is quick; takeover is measured against it


def test_a_lease_is_held_renewed_refused_and_handed_over(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)  # two hosts
    try:
        assert a.lease("alerts", "host-a", 0.6) == 1
        assert b.lease("alerts", "host-b", 0.6) is None  # held elsewhere
        assert a.lease("alerts", "host-a", 0.6) == 1  # renewed: same epoch
        time.sleep(0.8)
        assert b.lease("alerts", "host-b", 5) == 2  # ran out: it changes hands, one epoch on
        assert a.lease("alerts", "host-a", 5) is None
        assert [r["holder"] for r in a.leases()] == ["host-b"] and a.leases()[0]["expires"] > a.leases()[0]["now"]
        assert not a.release_lease("alerts", "host-a") and b.release_lease("alerts", "host-b")
        assert a.lease("alerts", "host-a", 5) == 3  # released: taken at once
        assert a.lease("alerts-yanhu", "host-b", 5) == 1  # each partition its own lease
    finally:
        a.close()
        b.close()


def test_a_holder_whose_lease_was_taken_stops(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    lost = threading.Event()
    held = Lease(a, "alerts", 0.6, holder="host-a", on_lost=lost.set)
    try:
        assert held.wait()
        held.keep()
        time.sleep(0.5)
        assert not lost.is_set() and b.lease("alerts", "host-b", 0.6) is None  # kept renewed
        a.release_lease("alerts", "host-a")  # as if it had run out while this host was stalled
        assert b.lease("alerts", "host-b", 30) == 2
        assert lost.wait(2), "the old holder did not notice it lost the lease"
    finally:
        held.give_up()
        a.close()
        b.close()


def test_a_holder_that_cannot_reach_the_store_stops_before_its_lease_runs_out() -> None:
    """PostgreSQL stopped under the holder: it gives up within two thirds of the lease, before the
    standby (which may still reach the database) could take it."""
    from tests.pg import NoPostgres, start_postgres

    try:
        server = start_postgres()
    except NoPostgres as exc:
        pytest.skip(str(exc))
    try:
        _name, url = server.fresh_database()
        store = open_store(url)
        lost = threading.Event()
        held = Lease(store, "alerts", 1.5, holder="host-a", on_lost=lost.set)
        assert held.wait()
        held.keep()
        t0 = time.monotonic()
        server.stop()
        assert lost.wait(5), "the holder kept running with no way to renew its lease"
        assert time.monotonic() - t0 < 1.5, "it stopped only after its lease could have been taken"
        held.give_up()
    finally:
        server.stop()


class Engine:
    """`smartcommunity alerts --standby` as its own process (a host of its own with PostgreSQL)."""

    def __init__(self, settings: Settings, data: Path, store_url: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        self.env.update(settings.env())
        self.env.update(SC_DATA_DIR=str(data), SC_STORE_URL=store_url, SC_ALERTS_LEASE_S=str(TTL_S),
                        SC_INFLUX_URL="http://127.0.0.1:9", SC_AUTO_INSTALL="0", SC_LOG_LEVEL="INFO")
        data.mkdir(parents=True, exist_ok=True)
        self.log = data / f"alerts-{id(self)}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", "alerts", "--standby"], cwd=ROOT,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def engines(settings: Settings, store_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    one_host = not store_url.startswith("postgres")  # SQLite: two processes on one host share its files
    a = Engine(settings, tmp_path / "host-a", store_url)
    # Subscribed (its broker session exists from then on, and keeps what comes while nobody runs it).
    assert wait_until(lambda: "re-published" in a.log.read_text(errors="replace"), timeout=60), \
        a.log.read_text(errors="replace")[-2000:]
    b = Engine(settings, tmp_path / ("host-a" if one_host else "host-b"), store_url)
    try:
        yield a, b
    finally:
        for e in (a, b):
            e.stop()


def test_a_standby_takes_over_a_killed_engine(settings: Settings, store_url: str,
                                              engines: tuple[Engine, Engine]) -> None:
    a, b = engines
    gas = [d for d in system_registry(settings).values() if d.kind == "gas"][:2]
    seen = Collector(settings, f"{TOPIC_ROOT}/alerts/#")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-ingest-" + str(os.getpid()))
    pub.connect(settings.mqtt.host, settings.mqtt.port)
    pub.loop_start()
    store = open_store(store_url)

    def reading(dev: Device, lel: float) -> float:
        """As ingest hands an accepted reading on (ingest/forward.py)."""
        rec = Telemetry(dev, int(time.time() * 1000), None, {"lel_pct": lel})
        pub.publish(records_topic(dev.community), encode([rec]), qos=1)
        return time.monotonic()

    def alerts_of(device_id: str) -> set[str]:
        """The alerts of a device published on sc/alerts by these engines (the broker is shared with
        other tests: their retained copies are not of this store)."""
        return {m["alert_id"] for m in seen.json()
                if m.get("device_id") == device_id and store.get(m["alert_id"]) is not None}

    try:
        holder = store.leases()[0]["holder"]
        assert holder.split(":")[1] == str(a.proc.pid)
        reading(gas[0], 62.0)
        assert seen.wait_for(lambda _m: bool(alerts_of(gas[0].device_id)), timeout=30), \
            a.log.read_text(errors="replace")[-3000:]
        first = alerts_of(gas[0].device_id)
        assert b.proc.poll() is None and store.leases()[0]["holder"] == holder  # B waits

        a.proc.kill()  # the host dies: no clean hand-over
        killed = time.monotonic()
        sent = reading(gas[1], 58.0)  # a red reading while nobody runs the partition
        reading(gas[0], 63.0)  # and the open leak goes on
        assert wait_until(lambda: store.leases()[0]["holder"] != holder, timeout=30, every=0.1), \
            b.log.read_text(errors="replace")[-3000:]
        taken = time.monotonic() - killed
        assert seen.wait_for(lambda _m: bool(alerts_of(gas[1].device_id)), timeout=40), \
            b.log.read_text(errors="replace")[-3000:]
        raised = time.monotonic() - sent
        print(f"takeover {taken:.1f} s (lease {TTL_S:g} s); red reading -> sc/alerts {raised:.1f} s")
        assert taken <= 15 and raised <= 30
        assert store.leases()[0]["epoch"] == 2 and store.leases()[0]["holder"].split(":")[1] == str(b.proc.pid)

        # Nothing raised twice: the open leak is the same alert, one row, still active.
        time.sleep(1.0)
        assert alerts_of(gas[0].device_id) == first
        rows = [x for x in store.list(limit=100) if x.device_id in (gas[0].device_id, gas[1].device_id)]
        assert sorted(x.device_id for x in rows) == sorted([gas[0].device_id, gas[1].device_id])
        assert all(x.state != "resolved" for x in rows)
    finally:
        store.close()
        pub.loop_stop()
        seen.close()
