"""The alert store fails over by PostgreSQL's own means: a primary and a streaming-replication standby
named together in `SC_STORE_URL` (libpq's `target_session_attrs=read-write`); the primary is killed
while the engine runs, a red reading comes in meanwhile, then the standby is promoted. The engine keeps
warning from memory while no database takes writes, and writes what it held, with the true times and a
`written_late` step, into the promoted standby — nothing lost, nothing raised twice."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import orjson
import psycopg
import pytest

from alerts.holdover import HeldPostgresStore, held_snapshot
from alerts.store import open_store
from alerts.timeline import Event
from core.contract import TOPIC_ROOT
from core.registry import system_registry
from core.settings import Settings
from tests.conftest import Collector, RunningAlerts, feed, wait_until
from tests.pg import NoPostgres, RunningPostgres, promote, replicated_pair


@pytest.fixture
def pair() -> Iterator[tuple[RunningPostgres, RunningPostgres, str]]:
    """(primary, standby, SC_STORE_URL naming both), the store made on the primary before the copy."""
    try:
        with replicated_pair() as (primary, standby, _, url):
            yield primary, standby, url
    except NoPostgres as exc:
        pytest.skip(str(exc))


def replayed(standby: RunningPostgres, db: str, n: int) -> bool:
    with psycopg.connect(standby.url(db), autocommit=True) as c:
        return int(c.execute("SELECT count(*) FROM alerts").fetchone()[0]) >= n


def test_the_engine_warns_through_a_failover_and_loses_nothing(
        settings: Settings, pair: tuple[RunningPostgres, RunningPostgres, str]) -> None:
    primary, standby, url = pair
    db = url.rsplit("/", 1)[1].split("?")[0]
    s = dataclasses.replace(settings, store_url=url)
    gas = [d for d in system_registry(s).values() if d.kind == "gas"][:2]
    seen = Collector(s, f"{TOPIC_ROOT}/alerts/#")
    try:
        with RunningAlerts(s) as svc:
            assert isinstance(svc.store, HeldPostgresStore)
            feed(svc, gas[0], {"lel_pct": 62.0})
            assert seen.wait_for(lambda m: any(b'"' + gas[0].device_id.encode() + b'"' in p for _, p, _ in m), 15)
            # Asynchronous replication: the standby has what was committed before the loss (waited for
            # here; synchronous_standby_names makes PostgreSQL wait for it on every commit instead).
            assert wait_until(lambda: replayed(standby, db, 1), timeout=15)

            primary.crash()
            lost_at = time.monotonic()
            feed(svc, gas[1], {"lel_pct": 58.0})  # a red reading while no database takes writes
            feed(svc, gas[0], {"lel_pct": 63.0})  # the open leak goes on
            assert seen.wait_for(lambda m: any(b'"' + gas[1].device_id.encode() + b'"' in p for _, p, _ in m), 15)
            warned = time.monotonic() - lost_at
            assert wait_until(lambda: held_snapshot(svc.store)["holding"] > 0, timeout=10)
            assert held_snapshot(svc.store)["store_down_since"] is not None

            promote(standby)
            promoted = time.monotonic()
            assert wait_until(lambda: held_snapshot(svc.store)["holding"] == 0
                              and held_snapshot(svc.store)["written_late"] > 0, timeout=30)
            written = time.monotonic() - promoted
        print(f"red reading on sc/alerts {warned:.2f} s after the primary died; held writes in the promoted "
              f"standby {written:.1f} s after promotion")
        store = open_store(url)  # the promoted standby now
        try:
            rows = {a.device_id: a for a in store.list(limit=50)}
            assert set(rows) == {gas[0].device_id, gas[1].device_id}  # one alert each: none twice, none lost
            late = rows[gas[1].device_id]
            events = [st.event for st in store.timeline(late.alert_id)]
            assert events[0] == Event.RAISED and Event.WRITTEN_LATE in events
            assert late.severity == "red" and late.state != "resolved"
        finally:
            store.close()
    finally:
        seen.close()


def test_what_the_standby_never_received_is_written_again_from_memory(
        settings: Settings, pair: tuple[RunningPostgres, RunningPostgres, str]) -> None:
    primary, standby, url = pair
    db = url.rsplit("/", 1)[1].split("?")[0]
    s = dataclasses.replace(settings, store_url=url)
    dev, gone = [d for d in system_registry(s).values() if d.kind == "gas"][2:4]  # none the test above raised
    mine = b'"' + dev.device_id.encode() + b'"'
    seen = Collector(s, f"{TOPIC_ROOT}/alerts/#")

    def on_primary(sql: str) -> object:
        with psycopg.connect(primary.url(db), autocommit=True) as c:
            return c.execute(sql).fetchone()[0]  # type: ignore[index]

    try:
        with RunningAlerts(s) as svc:
            feed(svc, gone, {"lel_pct": 62.0})  # an alert the standby has ...
            assert wait_until(lambda: replayed(standby, db, 1), timeout=15)
            primary.stop_sending()  # ... and from here on the standby receives nothing
            feed(svc, gone, {"lel_pct": 0.0})  # ... whose resolve it never receives
            feed(svc, dev, {"lel_pct": 62.0})  # an alert it never receives
            assert seen.wait_for(lambda m: any(mine in p and not kept for _, p, kept in m), 15)
            raised = next(orjson.loads(p)["alert_id"] for _, p, kept in seen.messages if mine in p and not kept)
            # Both committed on the primary (the resolve after the clear hold-off).
            assert wait_until(lambda: on_primary("SELECT count(*) FROM alerts WHERE state != 'resolved'") == 1
                              and on_primary("SELECT count(*) FROM alerts") == 2, timeout=15)
            primary.crash()  # acknowledged, never sent: asynchronous replication loses them here
            with psycopg.connect(standby.url(db), autocommit=True) as c:
                assert c.execute("SELECT device_id, state FROM alerts").fetchall() == [(gone.device_id, "active")]
            feed(svc, dev, {"lel_pct": 80.0})  # the leak goes on: an update the engine holds
            assert wait_until(lambda: held_snapshot(svc.store)["holding"] > 0, timeout=10)
            promote(standby)
            assert wait_until(lambda: held_snapshot(svc.store)["holding"] == 0
                              and held_snapshot(svc.store)["store_down_since"] is None, timeout=30)
            assert held_snapshot(svc.store)["written_again"] == 2  # the alert and the resolve
            feed(svc, dev, {"lel_pct": 95.0})  # after the failover: the same alert goes on, none raised anew
            assert wait_until(lambda: any(b"95.0" in p and mine in p for _, p, _ in seen.messages), timeout=10)
        store = open_store(url)  # the promoted standby
        try:
            rows = store.list(device_id=dev.device_id, limit=10)
            assert [a.alert_id for a in rows] == [raised]  # written again, and once: the same alert
            steps = store.timeline(rows[0].alert_id)
            events = [st.event for st in steps]
            assert rows[0].state != "resolved" and events[0] == Event.RAISED and events.count(Event.RAISED) == 1
            assert [st.note for st in steps if st.event == Event.WRITTEN_LATE] == [HeldPostgresStore.LOST_NOTE]
            assert rows[0].value == 95.0  # and the engine goes on with it
            closed = store.list(device_id=gone.device_id, limit=10)
            assert [a.state for a in closed] == ["resolved"]  # its resolve written again
            events = [st.event for st in store.timeline(closed[0].alert_id)]
            assert events == [Event.RAISED, Event.RESOLVED, Event.WRITTEN_LATE]
        finally:
            store.close()
    finally:
        seen.close()
