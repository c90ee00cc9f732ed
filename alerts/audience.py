"""Whom an alert may reach: a roster person who stands for a staff account with a scope (a grid worker's
community, a gas company's kind: `users scope`, `users person`) hears only of alerts in that scope — the
same judgement the dashboard makes for that account's pages, so nobody is called about what their pages
answer 404 for. People with no account, or an account without a scope, hear of everything the roster
gives them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from alerts.roster import Person
from core.contract import Alert
from core.staff import Accounts, Scope

log = logging.getLogger(__name__)

RELOAD_S = 30.0  # accounts change by hand (`users scope`): read again this often


def in_scope(people: Sequence[Person], alert: Alert, scopes: dict[str, list[Scope]]) -> list[Person]:
    """Those of `people` who may hear of the alert: no scoped account, or one whose scope holds it."""
    return [p for p in people if (ss := scopes.get(p.pid or "")) is None
            or any(s.allows(alert.community, alert.kind) for s in ss)]


class ScopeBook:
    """Each roster person's scopes, from the accounts that stand for them (read again every `RELOAD_S`);
    a person with any account of no scope is not limited."""

    def __init__(self, accounts: Callable[[], Accounts]) -> None:
        self._accounts = accounts
        self._lock = threading.Lock()
        self._scopes: dict[str, list[Scope]] = {}
        self._read_at = -RELOAD_S

    def current(self) -> dict[str, list[Scope]]:
        now = time.monotonic()
        if now - self._read_at >= RELOAD_S:
            with self._lock:
                try:
                    scopes: dict[str, list[Scope]] = {}
                    free: set[str] = set()
                    for acc in self._accounts().accounts():
                        if not acc.person:
                            continue
                        if acc.scope.everything:
                            free.add(acc.person)
                        else:
                            scopes.setdefault(acc.person, []).append(acc.scope)
                    self._scopes = {k: v for k, v in scopes.items() if k not in free}
                except Exception as exc:  # the accounts unreadable: keep the last known scopes
                    log.warning("staff accounts not read for notification scopes (%s): last ones kept", exc)
                self._read_at = now
        return self._scopes
