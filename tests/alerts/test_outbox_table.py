"""The outbox in the alert store's PostgreSQL database (alerts/store/outbox.py `TableOutbox`): entries and
cursors round trip, a second host taking a target over is the only one to send from then on, and an
append while the database is away is held in memory and written when it answers again."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from alerts.channels.base import Target
from alerts.delivery import Delivery, RetryPolicy, Superseded
from alerts.message import Places
from alerts.notify import Notifier
from alerts.store import open_store
from alerts.store.outbox import TableOutbox
from core.registry import bundled_registry_path, load_registry
from tests.alerts.channels.receivers import Webhook
from tests.alerts.test_delivery import ids_of, raise_n
from tests.conftest import wait_until
from tests.pg import NoPostgres, promote, replicated_pair

FAST = RetryPolicy(first_s=0.05, max_s=0.2, give_up_s=3600)


@pytest.fixture
def url(pg_url: str) -> str:
    open_store(pg_url).close()  # the schema, as the engine's store makes it
    return pg_url


@pytest.fixture
def hook() -> Iterator[Webhook]:
    h = Webhook()
    yield h
    h.close()


def notifier(box: TableOutbox) -> Notifier:
    return Notifier(box, Places(load_registry(bundled_registry_path()).get), "http://dash:8050")


def test_entries_and_cursors_round_trip_per_partition(url: str) -> None:
    a, b, other = TableOutbox(url, "alerts"), TableOutbox(url, "alerts"), TableOutbox(url, "alerts-yanhu")
    try:
        assert a.size() == 1 and a.read(1) == []
        sent = [a.append({"event": "raised", "n": i}) for i in range(3)]
        other.append({"event": "raised", "n": 99})  # another partition's: not in this one
        got = b.read(1)  # another host sees them, in order, at increasing positions
        assert [e for _, e in got] == sent and [p for p, _ in got] == sorted(p for p, _ in got)
        assert b.consumed == got[-1][0] + 1 == b.size()
        assert b.read(got[1][0]) == got[1:]
        a.append(dict(sent[0]))  # the same entry written again (an answer lost on the way): still one
        assert len(b.read(1)) == 3

        assert a.load_cursor("hook") is None
        a.save_cursor("hook", {"offset": got[1][0], "done": [], "sent": [], "blocked_until": 0})
        assert b.load_cursor("hook")["offset"] == got[1][0] and a.still_mine("hook")  # type: ignore[index]
        assert b.load_cursor("hook", claim=True)["offset"] == got[1][0]  # type: ignore[index]
        assert not a.still_mine("hook") and b.still_mine("hook")
        with pytest.raises(Superseded):
            a.save_cursor("hook", {"offset": 0, "done": [], "sent": [], "blocked_until": 0})
        assert b.load_cursor("hook")["offset"] == got[1][0]  # type: ignore[index]
        assert a.compact(keep_s=0) == 1  # what every cursor has passed (the first entry), not the rest
        assert [p for p, _ in b.read(1)] == [p for p, _ in got[1:]]
    finally:
        for box in (a, b, other):
            box.close()


def test_a_second_host_that_takes_over_never_sends_what_the_first_finished(url: str, tmp_path: Path,
                                                                            hook: Webhook) -> None:
    target = [Target("hook", "webhook", hook.url)]
    first = Delivery(tmp_path / "host-a", target, policy=FAST, outbox=TableOutbox(url, "alerts"))
    first.start()
    appender = TableOutbox(url, "alerts")  # a third process queueing messages (a dispatch)
    second: Delivery | None = None
    try:
        before = raise_n(notifier(appender), 2, prefix="a-")
        assert sorted(ids_of(hook.wait_for(2))) == before
        assert wait_until(lambda: first.workers["hook"].delivered == 2, 5)
        time.sleep(0.3)  # the cursor saved after each delivery
        second = Delivery(tmp_path / "host-b", target, policy=FAST, outbox=TableOutbox(url, "alerts"))
        second.start()  # takes the cursor over (the first is still running: a host thought dead)
        after = raise_n(notifier(appender), 2, prefix="b-")
        assert sorted(ids_of(hook.wait_for(4))) == before + after
        time.sleep(1.0)
        assert sorted(ids_of(hook.received)) == before + after  # each once: nothing of the first's again
        assert second.workers["hook"].delivered == 2 and first.workers["hook"].delivered == 2
        assert wait_until(lambda: not first.workers["hook"].is_alive(), 3)  # it saw it was taken over
    finally:
        first.stop()
        if second is not None:
            second.stop()
        appender.close()


def test_an_append_while_the_database_is_away_is_held_then_written(url: str, tmp_path: Path,
                                                                  hook: Webhook) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    box = TableOutbox(url, "alerts")
    d = Delivery(tmp_path / "host-a", [Target("hook", "webhook", hook.url)], policy=FAST, outbox=box)
    d.start()
    try:
        with psycopg.connect(admin, autocommit=True) as db:  # the database refuses everyone meanwhile
            db.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false'.encode())
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
        t0 = time.monotonic()
        ids = raise_n(notifier(box), 2, prefix="held-")
        assert time.monotonic() - t0 < 1.0, "the append waited for the database"
        assert len(box.held) == 2
        assert sorted(ids_of(hook.wait_for(2))) == ids  # delivered from memory meanwhile
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true'.encode())
        assert wait_until(lambda: not box.held, 10), "the held entries were not written"
        later = TableOutbox(url, "alerts")
        assert [e["alert_id"] for _, e in later.read(1)] == ids  # written, in order
        later.close()
        time.sleep(0.5)
        assert sorted(ids_of(hook.received)) == ids  # and not sent a second time from the table
    finally:
        d.stop()


def test_notify_status_shows_each_targets_backlog_in_the_store(url: str, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                              capsys) -> None:
    import orjson

    from smartcommunity.cli import main
    from tests.alerts.channels.receivers import dead_url

    for k in [k for k in os.environ if k.startswith("SC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SC_STORE_URL", url)
    box = TableOutbox(url, "alerts")
    d = Delivery(tmp_path / "var", [Target("down", "webhook", dead_url())], policy=RetryPolicy(5, 5, 3600),
                 outbox=box)
    d.start()
    try:
        raise_n(notifier(box), 2)
        assert main(["notify", "status"]) == 0
    finally:
        d.stop()
    out = orjson.loads(capsys.readouterr().out)["partitions"]["alerts"]
    assert out["entries"] == 2 and out["cursors"]["down"]["behind_entries"] == 2
    assert out["cursors"]["down"]["owner"] == box.owner


def test_what_a_failover_lost_is_written_again_on_reconnection() -> None:
    """An entry the primary committed but never streamed (asynchronous replication) is written again into
    the promoted standby when the outbox reconnects; one already there stays one."""
    try:
        with replicated_pair() as (primary, standby, name, url):
            box = TableOutbox(url, "alerts")

            def ids_on_standby() -> set[str]:
                with psycopg.connect(standby.url(name), autocommit=True) as c:
                    return {r[0] for r in c.execute("SELECT id FROM outbox").fetchall()}

            box.append({"id": "kept", "alert_id": "a-1", "event": "raised"})
            assert wait_until(lambda: ids_on_standby() == {"kept"}, timeout=15)
            primary.stop_sending()
            box.append({"id": "lost", "alert_id": "a-2", "event": "raised"})  # committed, never streamed
            primary.crash()
            assert ids_on_standby() == {"kept"}
            promote(standby)

            def written() -> bool:
                box.size()  # any use of the outbox reconnects (once the database answers)
                return ids_on_standby() == {"kept", "lost"}

            assert wait_until(written, timeout=30, every=0.3)
            assert box.written_again == 1  # "kept" was there: not written twice
            assert [e["id"] for _, e in box.read(0) if e] == ["kept", "lost"]
            box.close()
    except NoPostgres as exc:
        pytest.skip(str(exc))
