"""The alert store on a full disk: what cannot be written is kept in memory and written later.

`HeldStore` is the `AlertStore` the engine uses. While the data disk is full, a write that fails
with "database or disk is full" is queued in memory, in order, with the times it happened; reads
(`get`, `open_alerts`, `timeline`) see the queued state on top of the database, so the engine goes
on raising, updating and resolving as if it had been written. Once a retry (at most one a second,
so a full disk costs the hot path nothing) succeeds, the queue is written in order — rows and
steps carry their true times — and every alert touched meanwhile gets a `written_late` step naming
the gap. Condition state and last-heard times are merged while held (only the latest matters).

PostgreSQL fails over asynchronously: a commit the primary acknowledged but had not yet sent to its
standby is not in the promoted standby. So after every outage, before the held writes, the engine's
open alerts (and resolves of the last minutes) are checked against the database it reaches now, and
what is missing is written again from memory, marked so on the timeline (`Holding._write_lost`).

Started on a full disk (a restart while it is full), the database cannot be opened for writing (its
WAL needs room): it is then read as it is on disk (SQLite `immutable`, or an empty store if there is
none yet), every write is held, and it is opened properly as soon as there is room.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from alerts.store import AlertStore, AlreadyOpen, Store, sqlite_file
from alerts.store.postgres import PostgresStore, Prober, Unreachable, unreachable
from alerts.timeline import SYSTEM, Event, Step
from core.contract import Alert, AlertState
from core.diskfull import is_disk_full
from core.settings import Settings
from core.timebase import iso_ms

log = logging.getLogger(__name__)

RETRY_S = 1.0
Key = tuple[str, str]
# How long a resolve is remembered, to be written again if a failover lost it (replication lags by far less).
RESOLVE_KEEP_S = 600.0
# What the engine holds open: (alert, subject, its condition row as `save_conditions` takes it, or None).
Memory = Callable[[], Iterable[tuple[Alert, str, dict[str, Any] | None]]]


def open_held(settings: Settings) -> Store:
    """The engine's store, held while it cannot write: the SQLite file on a full disk (`HeldStore`),
    PostgreSQL while its server cannot be reached (`HeldPostgresStore`)."""
    path = sqlite_file(settings)
    return HeldStore(path) if path is not None else HeldPostgresStore(str(settings.store_url))


def retry_held(store: Store) -> None:
    """Write what a held store keeps in memory, if it is one (at most once a second)."""
    if isinstance(store, Holding):
        store.retry()


def remember_from(store: Store, memory: Memory) -> None:
    """Let a held store ask the engine what it holds open, to write again what a failover lost."""
    if isinstance(store, Holding):
        store._memory = memory


def held_snapshot(store: Store) -> dict[str, Any]:
    """What `HeldStore.snapshot` tells; a store that holds nothing holds nothing."""
    if isinstance(store, Holding):
        return store.snapshot()
    return {"holding": 0, "degraded": False, "disk_full_since": None, "written_late": 0, "written_again": 0}


class Holding:
    """The holding itself, over a backend `_BASE` whose writes fail with what `_holdable` says."""

    _BASE: ClassVar[type[Any]]
    # What the timeline says of the gap, once written (the cause differs by backend).
    GAP_NOTE: ClassVar[str] = "数据盘满期间的记录已按实际时间补写"
    # A commit acknowledged can be lost with the server (PostgreSQL's asynchronous standby): after an
    # outage, what the engine holds is checked against the database and written again where missing.
    LOSES_COMMITS: ClassVar[bool] = False
    LOST_NOTE: ClassVar[str] = "故障切换中丢失 (备库未收到), 已按引擎内存补写"
    degraded = False  # opened read-only on a full disk (SQLite): every write is held
    _memory: Memory | None = None  # the engine's open alerts (remember_from); else `_known`

    @staticmethod
    def _holdable(exc: BaseException) -> bool:
        return is_disk_full(exc)

    def _init_holding(self) -> None:
        self._hold = threading.RLock()
        self._ops: deque[tuple[str, tuple[Any, ...], dict[str, Any]]] = deque()
        self._held: dict[str, tuple[Alert, str]] = {}  # alert_id -> (latest state, subject)
        self._steps: dict[str, list[Step]] = {}  # alert_id -> steps not yet written
        self._conds: dict[Key, dict[str, Any] | None] = {}  # None: deleted
        self._seen: dict[str, float] = {}
        self.full_since: float | None = time.time() if self.degraded else None
        self._tried_at = time.monotonic()
        self.written_late = 0  # operations written after the disk came back (since start)
        # The last state read or written of each open alert: what a held update starts from when the
        # database cannot even be read (PostgreSQL failing over).
        self._known: dict[str, tuple[Alert, str]] = {}
        # Resolves written lately: alert_id -> (when, the resolved row, subject, resolve's kwargs).
        self._resolved: dict[str, tuple[float, Alert, str | None, dict[str, Any]]] = {}
        self.written_again = 0  # alerts and resolves a failover lost, written again (since start)

    # -- state ----------------------------------------------------------------------------------
    @property
    def holding(self) -> int:
        """Writes kept in memory now."""
        return len(self._ops) + len(self._conds) + len(self._seen)

    def snapshot(self) -> dict[str, Any]:
        since = iso_ms(int(self.full_since * 1000)) if self.full_since else None
        return {"holding": self.holding, "degraded": self.degraded, "disk_full_since": since,
                "written_late": self.written_late, "written_again": self.written_again}

    # -- the write path -------------------------------------------------------------------------
    def _try(self, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> tuple[bool, Any]:
        """(written?, result): written now if nothing is queued before it and the disk takes it."""
        with self._hold:
            # After an outage of a store that can lose commits, nothing is written before the check.
            checking = self.LOSES_COMMITS and self.full_since is not None
            if self.holding or self.degraded or checking:
                self.retry()
                checking = self.LOSES_COMMITS and self.full_since is not None
            if not self._ops and not self.degraded and not checking:
                try:
                    return True, getattr(self._BASE, name)(self, *args, **kw)
                except Exception as exc:
                    if not self._holdable(exc):
                        raise
                    self._went_full(exc)
            self._ops.append((name, args, kw))
            return False, None

    def _went_full(self, exc: BaseException) -> None:
        now = time.time()
        if self.full_since is None:
            self.full_since = now
            log.critical("ALERT STORE CANNOT WRITE (%s): alerts go on from memory; rows, steps and "
                         "condition state are kept and written when there is space again", exc)
        self._tried_at = time.monotonic()

    def retry(self, force: bool = False) -> bool:
        """Write what is held, in order; True when nothing is held any more."""
        with self._hold:
            if not self.holding and not self.degraded and self.full_since is None:
                return True
            if not force and time.monotonic() - self._tried_at < RETRY_S:
                return False
            self._tried_at = time.monotonic()
            try:
                if self.degraded:
                    self._reopen()
                if self.LOSES_COMMITS and self.full_since is not None:
                    try:
                        self._write_lost()  # before the held writes: they may update a row that was lost
                    except Exception as exc:
                        if self._holdable(exc):
                            raise
                        log.exception("could not check the open alerts against the store after an outage")
                while self._ops:
                    name, args, kw = self._ops[0]
                    try:
                        getattr(self._BASE, name)(self, *args, **kw)
                    except Exception as exc:
                        if self._holdable(exc):
                            raise
                        log.error("held %s could not be written (%s): dropped", name, exc)
                    self._ops.popleft()
                    self.written_late += 1
                if self._conds:
                    ups = [(r, s, c) for (r, s), c in self._conds.items() if c is not None]
                    dels = [k for k, c in self._conds.items() if c is None]
                    self._BASE.save_conditions(self, ups, dels)
                    self._conds.clear()
                if self._seen:
                    self._BASE.save_seen(self, list(self._seen.items()))
                    self._seen.clear()
                self._mark_gap()
            except Exception as exc:
                if not self._holdable(exc):
                    raise
                return False
            return True

    def _mark_gap(self) -> None:
        """Name the gap on the timeline of every alert whose steps were written late."""
        if self.full_since is None:
            return
        until = iso_ms(int(time.time() * 1000))
        # From the first write that failed: its own time may be a moment before the failure was seen.
        since = min([iso_ms(int(self.full_since * 1000))] + [st.at for sts in self._steps.values() for st in sts])
        touched = list(self._steps)
        steps = [(a, Event.WRITTEN_LATE, until, SYSTEM, self.GAP_NOTE,
                  {"from": since, "to": until, "steps": len(self._steps[a])}) for a in touched]
        self._BASE.record_many(self, steps)
        log.warning("alert store writing again: held rows and steps written (disk full %s to %s, %d alerts)",
                    since, until, len(touched))
        self.full_since = None
        for alert, _ in self._held.values():
            if alert.state == AlertState.RESOLVED:
                self._known.pop(alert.alert_id, None)  # kept while held: what a lost row is written from
        self._held.clear()
        self._steps.clear()

    def _write_lost(self) -> None:
        """After an outage: write again what the engine holds but the database (a promoted standby) lacks.

        An open alert missing is written with its true times, a `raised` step and a `written_late` step
        saying so (and its condition state); a resolve written lately that the database shows open is
        written again. Alerts with held writes are written as they were before them (`_known`): the held
        writes follow. One read of the database, and writes only for what is missing."""
        held_inserts = {args[0].alert_id for name, args, _ in self._ops if name == "insert"}
        want: dict[str, tuple[Alert, str, dict[str, Any] | None]] = {}
        for alert_id, (alert, subject) in self._known.items():
            want[alert_id] = (alert, subject, None)
        if self._memory is not None:
            for alert, subject, cond in list(self._memory()):
                if alert.alert_id not in self._held:
                    want[alert.alert_id] = (alert, subject, cond)
                elif alert.alert_id in want:
                    want[alert.alert_id] = (*want[alert.alert_id][:2], cond)
        for alert_id in held_inserts:
            want.pop(alert_id, None)
        cutoff = time.monotonic() - RESOLVE_KEEP_S
        for alert_id in [a for a, r in self._resolved.items() if r[0] < cutoff]:
            del self._resolved[alert_id]
        ids = [*want, *(a for a in self._resolved if a not in want)]
        if not ids:
            return
        states = self._BASE._alert_states(self, ids)
        now = iso_ms(int(time.time() * 1000))
        steps: list[tuple[str, str, str, str | None, str | None, dict[str, Any] | None]] = []
        for alert_id, (_, alert, subject, kw) in list(self._resolved.items()):
            state = states.get(alert_id)
            if state == AlertState.RESOLVED or alert_id in want:
                continue
            if state is None and subject is not None:  # raised and resolved, both lost: the resolved row
                try:
                    self._BASE.insert(self, alert, subject)
                except AlreadyOpen:
                    continue
                steps.append((alert_id, Event.RESOLVED, alert.resolved_at or alert.updated_at, kw.get("by"),
                              kw.get("note"), {"by_hand": kw.get("by") is not None, **(kw.get("data") or {})}))
            elif state is not None:
                self._BASE.resolve(self, alert_id, alert.resolved_at or alert.updated_at, **kw)
            else:
                continue
            steps.append((alert_id, Event.WRITTEN_LATE, now, SYSTEM, self.LOST_NOTE,
                          {"lost": "resolved", "at": alert.resolved_at}))
        conds = []
        for alert_id, (alert, subject, cond) in want.items():
            if alert_id in states:
                continue
            try:
                self._BASE.insert(self, alert, subject)
            except AlreadyOpen:  # another alert holds its place now (raised by another engine): left to it
                log.error("alert %s lost in the failover is not written again: %s", alert_id,
                          "another alert of its condition is open")
                continue
            steps.append((alert_id, Event.WRITTEN_LATE, now, SYSTEM, self.LOST_NOTE,
                          {"lost": "raised", "at": alert.started_at}))
            if cond is not None:
                conds.append((alert.rule, subject, cond))
        if conds:
            self._BASE.save_conditions(self, conds, [])
        self._BASE.record_many(self, steps)
        again = sum(1 for st in steps if st[1] == Event.WRITTEN_LATE)
        self.written_again += again
        if again:
            log.warning("alert store failed over: %d alerts or resolves the database lacked written again "
                        "from memory", again)

    def _held_step(self, alert_id: str, event: str, at: str, by: str | None, note: str | None,
                   data: dict[str, Any] | None) -> None:
        lst = self._steps.setdefault(alert_id, [])
        lst.append(Step(-1 - len(lst), alert_id, at, str(event), by or SYSTEM, note, data or {}))

    def _base(self, alert_id: str) -> tuple[Alert, str] | None:
        held = self._held.get(alert_id)
        if held is not None:
            return held
        try:
            alert = self._BASE.get(self, alert_id)
            if alert is None:
                return None
            return alert, self._BASE.subject_of(self, alert_id) or alert.device_id
        except Exception as exc:
            if not self._holdable(exc) or alert_id not in self._known:
                raise
            return self._known[alert_id]

    # -- writes ---------------------------------------------------------------------------------
    def insert(self, alert: Alert, subject: str) -> None:
        with self._hold:
            self._known[alert.alert_id] = (alert, subject)
            done, _ = self._try("insert", (alert, subject), {})
            if not done:
                self._held[alert.alert_id] = (alert, subject)
                self._held_step(alert.alert_id, Event.RAISED, alert.started_at, SYSTEM, None,
                                {"severity": alert.severity, "value": alert.value, "message": alert.message})

    def update(self, alert_id: str, step: Any = None, **changes: Any) -> Alert | None:
        with self._hold:
            done, result = self._try("update", (alert_id,), {"step": step, **changes})
            if done:
                if result is not None and alert_id in self._known:
                    self._known[alert_id] = (result, self._known[alert_id][1])
                return result  # type: ignore[no-any-return]
            base = self._base(alert_id)
            if base is None or base[0].state == AlertState.RESOLVED:
                return None
            alert = dataclasses.replace(base[0], **changes) if changes else base[0]
            self._held[alert_id] = (alert, base[1])
            if step is not None:
                event, at, note, data = step
                self._held_step(alert_id, event, at, SYSTEM, note, data)
            return alert

    def resolve(self, alert_id: str, now: str, note: str | None = None, by: str | None = None, *,
                data: dict[str, Any] | None = None, watch_s: float | None = None) -> Alert | None:
        # Held, the watch after this close is written with it later; until then a re-rise raises anew.
        with self._hold:
            kw = {"note": note, "by": by, "data": data, "watch_s": watch_s}
            done, result = self._try("resolve", (alert_id, now), kw)
            if done:
                was = self._known.pop(alert_id, None)
                if result is not None and self.LOSES_COMMITS:
                    self._resolved[alert_id] = (time.monotonic(), result, was[1] if was else None, kw)
                return result  # type: ignore[no-any-return]
            base = self._base(alert_id)
            if base is None or base[0].state == AlertState.RESOLVED:
                return None
            alert = dataclasses.replace(base[0], state=str(AlertState.RESOLVED), updated_at=now, resolved_at=now,
                                        note=note or base[0].note, resolved_by=by)
            self._held[alert_id] = (alert, base[1])
            self._held_step(alert_id, Event.RESOLVED, now, by, note, {"by_hand": by is not None, **(data or {})})
            return alert

    def reopen(self, alert_id: str, now: str, data: dict[str, Any], **changes: Any) -> Alert | None:
        with self._hold:
            done, result = self._try("reopen", (alert_id, now, data), changes)
            if done:
                return result  # type: ignore[no-any-return]
            base = self._base(alert_id)
            if base is None or base[0].state != AlertState.RESOLVED:
                return None
            alert = dataclasses.replace(base[0], state=str(AlertState.ACTIVE), resolved_at=None, resolved_by=None,
                                        reopened=(base[0].reopened or 0) + 1, updated_at=now, **changes)
            self._held[alert_id] = (alert, base[1])
            self._held_step(alert_id, Event.REOPENED, now, SYSTEM, None, {**data, "reopened": alert.reopened})
            return alert

    def set_watch(self, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None:
        with self._hold:
            self._try("set_watch", (rule, subject, alert_id, closed, until), {})

    def record(self, alert_id: str, event: str, at: str, *, by: str | None = None, note: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        with self._hold:
            done, _ = self._try("record", (alert_id, event, at), {"by": by, "note": note, "data": data})
            if not done:
                self._held_step(alert_id, event, at, by, note, data)

    def record_many(self, steps: list[tuple[str, str, str, str | None, str | None, dict[str, Any] | None]]) -> None:
        if not steps:
            return
        with self._hold:
            done, _ = self._try("record_many", (list(steps),), {})
            if not done:
                for alert_id, event, at, by, note, data in steps:
                    self._held_step(alert_id, event, at, by, note, data)

    def save_conditions(self, upserts: list[tuple[str, str, dict[str, Any]]],
                        deletes: list[tuple[str, str]]) -> None:
        if not upserts and not deletes:
            return
        with self._hold:
            if not self.holding and not self.degraded:
                try:
                    self._BASE.save_conditions(self, upserts, deletes)
                    return
                except Exception as exc:
                    if not self._holdable(exc):
                        raise
                    self._went_full(exc)
            for k in deletes:
                self._conds[k] = None
            for rule, subject, c in upserts:
                self._conds[(rule, subject)] = dict(c)

    def save_seen(self, seen: list[tuple[str, float]]) -> None:
        if not seen:
            return
        with self._hold:
            if not self.holding and not self.degraded:
                try:
                    self._BASE.save_seen(self, seen)
                    return
                except Exception as exc:
                    if not self._holdable(exc):
                        raise
                    self._went_full(exc)
            for dev, at in seen:
                self._seen[dev] = max(at, self._seen.get(dev, at))

    # -- reads see what is held -----------------------------------------------------------------
    def get(self, alert_id: str) -> Alert | None:
        held = self._held.get(alert_id)
        if held is not None:
            return held[0]
        try:
            return self._BASE.get(self, alert_id)  # type: ignore[no-any-return]
        except Exception as exc:
            if not self._holdable(exc) or alert_id not in self._known:
                raise
            return self._known[alert_id][0]

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        out = self._BASE.open_alerts(self)
        self._known.update({a.alert_id: (a, key[1]) for key, a in out.items()})
        with self._hold:
            held = list(self._held.values())
        for alert, subject in held:
            key = (alert.rule, subject)
            if alert.state == AlertState.RESOLVED:
                if key in out and out[key].alert_id == alert.alert_id:
                    del out[key]
            else:
                out[key] = alert
        return out

    def timeline(self, alert_id: str) -> list[Step]:
        with self._hold:
            held = list(self._steps.get(alert_id, ()))
        return self._BASE.timeline(self, alert_id) + held


class HeldStore(Holding, AlertStore):
    """The SQLite store, held on a full disk."""

    _BASE = AlertStore

    def __init__(self, path: Path) -> None:
        self.path = path
        self.degraded = False
        try:
            AlertStore.__init__(self, path)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._open_degraded(exc)
        self._init_holding()

    def _open_degraded(self, exc: BaseException) -> None:
        log.critical("ALERT STORE CANNOT BE OPENED FOR WRITING (%s): read as it is, every write held in "
                     "memory until there is room", exc)
        self.open_frozen(self.path)
        self.degraded = True

    def _reopen(self) -> None:
        """Open the database for writing (there is room again); raises a disk-full error if not."""
        self.adopt(AlertStore(self.path))  # on failure this store is left as it was
        self.degraded = False
        log.warning("alert store opened for writing again")


class HeldPostgresStore(Holding, PostgresStore):
    """The PostgreSQL store, held while its server cannot be reached (a restart, a failover to the
    standby): the engine goes on warning from memory and writes what it held, with the true times,
    into the database it reaches next (`SC_STORE_URL` may name the primary and the standby, libpq's
    `postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write`)."""

    _BASE = PostgresStore
    GAP_NOTE = "数据库不可达期间的记录已按实际时间补写"
    LOSES_COMMITS = True
    LOST_NOTE = "主库故障切换时丢失 (备库未收到), 已按引擎内存补写"

    def __init__(self, url: str) -> None:
        PostgresStore.__init__(self, url)
        self._init_holding()
        self._last_shelves: list[Any] = []
        self._prober = Prober(self._connect, "store-probe", RETRY_S)

    @staticmethod
    def _holdable(exc: BaseException) -> bool:
        return unreachable(exc)

    # -- reads the engine makes on its hot path: with no database, what it knows stands in ----------
    def _read_or(self, fallback: Any, name: str, *args: Any) -> Any:
        try:
            return getattr(PostgresStore, name)(self, *args)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._went_full(exc)
            return fallback

    def watch_for(self, rule: str, subject: str) -> Any:
        # Unknown while the database is away: a re-rise is then raised anew rather than reopened.
        return self._read_or(None, "watch_for", rule, subject)

    def condition_of(self, alert_id: str) -> Any:
        return self._read_or(None, "condition_of", alert_id)

    def shelves(self, live_at: float | None = None) -> Any:
        got = self._read_or(None, "shelves", live_at)
        if got is None:
            return list(self._last_shelves)
        self._last_shelves = got
        return got

    def timeline(self, alert_id: str) -> list[Step]:
        with self._hold:
            held = list(self._steps.get(alert_id, ()))
        return list(self._read_or([], "timeline", alert_id)) + held

    def retry(self, force: bool = False) -> bool:
        """Write what is held once the database answers again: probed from a thread of its own, so the
        engine never waits on a connection attempt to a host that does not answer."""
        if (self.holding or self.full_since is not None) and not force and not self._prober.back.is_set():
            self._probe()
            return False
        done = super().retry(force)
        if done:
            self.full_since = None
        return done

    def _live(self) -> Any:
        # While the database is away, fail at once: the probe thread finds out when it is back.
        if self.full_since is not None and not self._prober.back.is_set():
            self._probe()
            raise Unreachable("the alert store's database is unreachable (probing every second)")
        if self.full_since is None and self._lost():
            # A lost connection is an outage too, however short: the server it reaches next may be a
            # promoted standby, and the retry after it checks what that lacks (`_write_lost`).
            exc = Unreachable("the alert store's connection was lost")
            self._went_full(exc)
            raise exc
        return super()._live()

    def _probe(self) -> None:
        self._prober.start(clear=True)

    def _went_full(self, exc: BaseException) -> None:
        if self.full_since is None:
            log.critical("ALERT STORE DATABASE UNREACHABLE (%s): alerts go on from memory; rows, steps and "
                         "condition state are kept and written when it answers again", exc)
            self.full_since = time.time()
            self._prober.back.clear()
        super()._went_full(exc)

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        out["store_down_since"] = out.pop("disk_full_since")  # not the data disk: the database server
        out["disk_full_since"] = None
        return out
