"""The alert store: the one home of alert state and the only code that speaks SQL to it.

Alerts and their append-only timeline, condition state, last-heard times, shelves, the watch after
a close, staff commands applied once, dispatches, archives and the period report's queries all go
through `Store`, the interface every backend implements. Callers (the engine, dispatch, archive,
report, shelving, the command server, the dashboard's reader) hold a `Store` and never a connection;
they follow the change feed (`last_seq` / `changes_since`: every change of an alert writes a numbered
timeline step) instead of re-reading tables.

`open_store` picks the backend from `SC_STORE_URL`: unset, `sqlite:` or a path is the SQLite file
under `SC_DATA_DIR` (`alerts/store/sqlite.py`); `postgresql://user:password@host:port/db` is PostgreSQL
(`alerts/store/postgres.py`), for a deployment on more than one host. A backend is a module here,
not edits in its callers. Every multi-statement change (a row and its timeline step; the checks before an archive
and the archive) is one transaction in every backend.
"""

from __future__ import annotations

import abc
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alerts.timeline import Step
from core.contract import Alert
from core.sqldb import POSTGRES_SCHEMES, store_scheme

if TYPE_CHECKING:
    from core.settings import Settings

StepSpec = tuple[str, str, str | None, dict[str, Any] | None]  # event, at (ISO), note, data
# One timeline step to append: (alert_id, event, at, by, note, data).
StepRow = tuple[str, str, str, str | None, str | None, dict[str, Any] | None]
Row = dict[str, Any]  # a dispatch, shelf or watch as plain fields (JSON columns decoded)


def store_path(data_dir: Path) -> Path:
    return data_dir / "alerts" / "alerts.sqlite"


# The staff command being applied (alerts/command/), set by the command server around its handler:
# the first write transaction of the command also marks its id applied, so a command whose answer
# was lost (a crash right after the commit) is known applied and never applied twice.
COMMAND: contextvars.ContextVar[tuple[str, str, str | None, str] | None] = contextvars.ContextVar(
    "sc_command", default=None)


class AlreadyOpen(Exception):
    """An unresolved alert for this rule and subject exists already."""


@dataclass(frozen=True, slots=True)
class ReportRows:
    """What the period report reads, taken in one consistent read."""
    alerts: list[Alert]  # alerts that started in the period
    firsts: dict[tuple[str, str], str]  # (alert_id, event) -> time of its first such step
    open_dispatches: list[tuple[Row, str]]  # (dispatch made in the period and still open, its community)
    overrides: dict[str, int]  # alert_id -> closes (resolve or archive) given over a live reading


class Store(abc.ABC):
    """Every operation on alert state; each write is one transaction, all or nothing."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- alerts ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def insert(self, alert: Alert, subject: str) -> None:
        """A new alert and its `raised` step; AlreadyOpen if one is unresolved for (rule, subject)."""

    @abc.abstractmethod
    def update(self, alert_id: str, step: StepSpec | None = None, **changes: Any) -> Alert | None:
        """Set fields on an unresolved alert (and write `step`); the new alert, None if resolved/absent."""

    @abc.abstractmethod
    def get(self, alert_id: str) -> Alert | None: ...

    @abc.abstractmethod
    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        """Unresolved alerts keyed by (rule, subject)."""

    @abc.abstractmethod
    def list(
        self, state: str | None = None, community: str | None = None, limit: int = 500, *,
        severity: str | None = None, rule: str | None = None, device_id: str | None = None,
        compound_id: str | None = None, since: str | None = None, until: str | None = None,
        updated_since: str | None = None,
    ) -> list[Alert]: ...

    @abc.abstractmethod
    def acknowledge(self, alert_id: str, by: str, note: str | None, now: str) -> Alert | None: ...

    @abc.abstractmethod
    def resolve(
        self, alert_id: str, now: str, note: str | None = None, by: str | None = None, *,
        data: dict[str, Any] | None = None, watch_s: float | None = None,
    ) -> Alert | None: ...

    @abc.abstractmethod
    def reopen(self, alert_id: str, now: str, data: dict[str, Any], **changes: Any) -> Alert | None: ...

    @abc.abstractmethod
    def condition_of(self, alert_id: str) -> tuple[Alert, str, dict[str, Any] | None] | None: ...

    @abc.abstractmethod
    def subject_of(self, alert_id: str) -> str | None:
        """The subject (device or place) an alert is about, None if no such alert."""

    # -- the timeline ------------------------------------------------------------------------------
    @abc.abstractmethod
    def record(self, alert_id: str, event: str, at: str, *, by: str | None = None, note: str | None = None,
               data: dict[str, Any] | None = None) -> None: ...

    @abc.abstractmethod
    def record_many(self, steps: list[StepRow]) -> None: ...

    @abc.abstractmethod
    def timeline(self, alert_id: str) -> list[Step]: ...

    # -- condition state and last-heard times ------------------------------------------------------
    @abc.abstractmethod
    def load_conditions(self) -> dict[tuple[str, str], dict[str, Any]]: ...

    @abc.abstractmethod
    def save_conditions(self, upserts: list[tuple[str, str, dict[str, Any]]],
                        deletes: list[tuple[str, str]]) -> None: ...

    @abc.abstractmethod
    def load_seen(self) -> dict[str, float]: ...

    @abc.abstractmethod
    def save_seen(self, seen: list[tuple[str, float]]) -> None: ...

    # -- shelves and watches -----------------------------------------------------------------------
    @abc.abstractmethod
    def shelve(self, scope: str, target: str, reason: str, by: str, until: float, now_iso: str,
               until_iso: str, *, approved_by: str | None = None, life_safety: bool = False,
               every: str | None = None) -> int: ...

    @abc.abstractmethod
    def unshelve(self, shelf_id: int, by: str, now_iso: str) -> bool: ...

    @abc.abstractmethod
    def shelves(self, live_at: float | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def set_watch(self, rule: str, subject: str, alert_id: str, closed: float, until: float) -> None: ...

    @abc.abstractmethod
    def watch_for(self, rule: str, subject: str) -> Row | None: ...

    @abc.abstractmethod
    def watches(self, live_at: float) -> list[Row]: ...

    # -- staff commands, applied once --------------------------------------------------------------
    @abc.abstractmethod
    def command(self, command_id: str) -> tuple[int | None, dict[str, Any] | None] | None: ...

    @abc.abstractmethod
    def answered(self, command_id: str, name: str, actor: str | None, at: str, status: int,
                 answer: dict[str, Any]) -> None: ...

    # -- the change feed ---------------------------------------------------------------------------
    @abc.abstractmethod
    def last_seq(self) -> int:
        """The number of the newest write of an alert row (0: none yet)."""

    @abc.abstractmethod
    def changes_since(self, seq: int, limit: int = 1000) -> tuple[int, list[str] | None]:
        """(the newest change number, the ids of alerts written after `seq`, oldest first); None for
        the ids when `seq` is older than the feed keeps (the reader reloads everything)."""

    # -- dispatches (alerts/dispatch.py) -----------------------------------------------------------
    @abc.abstractmethod
    def dispatch_insert(self, row: Row, step: StepSpec, by: str, check: Callable[[bool], None]) -> Row:
        """Write a dispatch and its step; `check(archived)` runs first in the transaction and raises
        to refuse (nothing written)."""

    @abc.abstractmethod
    def dispatch(self, dispatch_id: str) -> Row | None: ...

    @abc.abstractmethod
    def dispatches_for(self, alert_id: str) -> list[Row]:
        """An alert's dispatches, oldest first."""

    @abc.abstractmethod
    def open_dispatches(self, states: Sequence[str], community: str | None = None) -> list[Row]:
        """Dispatches in `states` (of alerts in `community`), by deadline."""

    @abc.abstractmethod
    def dispatch_advance(self, dispatch_id: str, from_states: Sequence[str], sets: dict[str, Any],
                         check: Callable[[Row | None], None], step: StepSpec, by: str | None,
                         inside: Callable[[], None] | None = None) -> Row:
        """Move a dispatch on from one of `from_states` by setting `sets`, and write its step, in one
        transaction. `check(current row or None)` runs first and raises to refuse; the step's data
        names the dispatch and its team; with `by` None the step is signed by whoever accepted the
        dispatch (else its assignee); `inside` runs last (its error rolls everything back)."""

    @abc.abstractmethod
    def dispatch_reopen(self, dispatch_id: str) -> Row | None:
        """A dispatch fed back (done) is open again (accepted); the dispatch as it is now."""

    @abc.abstractmethod
    def overdue_dispatches(self, now_iso: str) -> list[Row]:
        """Dispatches still unaccepted at `now_iso` past their deadline and not escalated yet."""

    @abc.abstractmethod
    def dispatch_escalate(self, dispatch_id: str, at: str, note: str, data: dict[str, Any]) -> Row | None:
        """Mark an unaccepted dispatch escalated and write its `escalated` step, once; None if it was
        accepted or escalated meanwhile."""

    # -- archives (alerts/archive.py) --------------------------------------------------------------
    @abc.abstractmethod
    def archive_insert(self, alert_id: str, at: str, by: str, cause: str, note: str | None,
                       data: dict[str, Any], open_states: Sequence[str],
                       check: Callable[[str | None, list[tuple[str, str]], str | None], None]) -> None:
        """Archive an alert and write its `archived` step, in one transaction after
        `check(alert state or None, [(team name, state) of its dispatches in open_states],
        archived_by or None)`, which raises to refuse."""

    @abc.abstractmethod
    def archived(self, alert_id: str) -> Row | None: ...

    @abc.abstractmethod
    def pending_archive(self, severities: Sequence[str], community: str | None = None,
                        limit: int = 1000) -> list[Alert]:
        """Resolved alerts of `severities` nobody has archived yet, oldest first."""

    # -- notification preferences of the roster's people (alerts/preferences.py) --------------------
    @abc.abstractmethod
    def preferences(self) -> dict[str, Row]:
        """Each person's preferences (by roster id): channels (a list), quiet, updated_by, updated_at."""

    @abc.abstractmethod
    def set_preferences(self, person: str, channels: Sequence[str], quiet: str | None, by: str, at: str) -> Row:
        """Set (replace) one person's preferences, signed by `by` at `at`; the row as written."""

    # -- the period report (alerts/report.py) ------------------------------------------------------
    @abc.abstractmethod
    def report_rows(self, lo: str, hi: str, community: str | None, open_states: Sequence[str]) -> ReportRows:
        """Alerts started in [lo, hi) (of `community`), the first acknowledgement and arrival of each,
        the dispatches made in the period still in `open_states`, and the overrides per alert."""

    # -- leases: which process runs an alert partition (alerts/lease.py) ------------------------------
    @abc.abstractmethod
    def lease(self, name: str, holder: str, ttl_s: float) -> int | None:
        """Take or renew the lease `name` for `ttl_s` seconds (on the database's clock): its epoch (one
        more than before when it changes hands), or None while another holder's lease runs."""

    @abc.abstractmethod
    def release_lease(self, name: str, holder: str) -> bool:
        """End `holder`'s lease at once (a clean stop hands over without waiting for it to run out)."""

    @abc.abstractmethod
    def leases(self) -> list[Row]:
        """Every lease: name, holder, expires, epoch, and `now` on the database's clock."""


    # -- patrols and hazards (alerts/patrols.py; migration 0013) -------------------------------------
    @abc.abstractmethod
    def checkin_insert(self, row: Row, hazard: Row | None = None) -> None:
        """Write a patrol check-in (and the hazard its finding opens), in one transaction."""

    @abc.abstractmethod
    def checkins(self, since: str, until: str | None = None, plan_id: str | None = None) -> list[Row]:
        """Check-ins at or after `since` (before `until`), oldest first."""

    @abc.abstractmethod
    def hazard(self, hazard_id: str) -> Row | None: ...

    @abc.abstractmethod
    def hazards(self, states: Sequence[str] | None = None, community: str | None = None,
                found_before: str | None = None, limit: int = 1000) -> list[Row]:
        """Hazards (in `states`, of `community`, found before `found_before`), by deadline."""

    @abc.abstractmethod
    def hazard_advance(self, hazard_id: str, from_states: Sequence[str], sets: dict[str, Any]) -> Row | None:
        """Set `sets` on a hazard in one of `from_states` (photos added to its list); the hazard as it is
        now, None if it was in no such state."""


def sqlite_file(where: Settings | str | Path) -> Path | None:
    """The SQLite file `SC_STORE_URL` (settings) or a URL/path names (`store_path(SC_DATA_DIR)` when
    unset); None when it names another backend (PostgreSQL)."""
    if isinstance(where, Path):
        return where
    if isinstance(where, str):
        url, default = where, None
    else:
        url, default = where.store_url or "", store_path(where.data_path)
    scheme = store_scheme(url)
    if scheme in POSTGRES_SCHEMES:
        return None
    if scheme not in ("", "sqlite"):
        raise ValueError(f"SC_STORE_URL: unknown store {scheme!r} (sqlite: or a path, or postgresql://)")
    path = url.split(":", 1)[1] if scheme else url
    if scheme and path.startswith("//"):  # sqlite:///abs/path, as SQLAlchemy writes it
        path = path[2:]
    if not path:
        if default is None:
            raise ValueError("a store URL without a path needs the settings (SC_DATA_DIR)")
        return default
    return Path(path)


def open_store(where: Settings | str | Path) -> Store:
    """The store named by `SC_STORE_URL` (settings) or a URL/path: unset, `sqlite:` or a path is
    the SQLite file (`store_path(SC_DATA_DIR)` by default); `postgresql://...` is PostgreSQL."""
    from alerts.store.sqlite import AlertStore

    path = sqlite_file(where)
    if path is not None:
        return AlertStore(path)
    from alerts.store.postgres import PostgresStore

    return PostgresStore(where if isinstance(where, str) else str(where.store_url))  # type: ignore[union-attr]


# The SQLite backend, under the name callers have always used.
from alerts.store.sqlite import AlertStore  # noqa: E402

__all__ = ["COMMAND", "AlertStore", "AlreadyOpen", "ReportRows", "Row", "StepRow", "StepSpec", "Store",
           "open_store", "sqlite_file", "store_path"]
