"""The marker of a live life-safety shelf (a gas rule or device, or a red alarm, shelved with a second
person's approval: alerts/shelving.py), shown on the console and the wall for as long as it lasts —
a silenced gas alarm must never be something the room forgets."""

from __future__ import annotations

import threading
import time
from typing import Any

from dash import html

from alerts.store import AlertStore
from core.timebase import local_time

CACHE_S = 2.0  # every open page asks each tick; the store is read at most this often
SCOPE_WORD = {"device": "设备", "compound": "小区", "rule": "规则"}


class ShelfMarks:
    """Live life-safety shelves from the store, cached briefly."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._at = 0.0
        self._rows: list[dict[str, Any]] = []

    def live(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            if now - self._at >= CACHE_S:
                self._rows = [s for s in self.store.shelves(live_at=now) if s.get("life_safety")]
                self._at = now
            return list(self._rows)


def marker(shelves: list[dict[str, Any]]) -> list[Any]:
    """The marker's lines (nothing when no life-safety shelf is live)."""
    if not shelves:
        return []
    return [html.Div(
        f"⚠ 生命安全告警已搁置：{SCOPE_WORD.get(s['scope'], s['scope'])} {s['target']} 至 {local_time(s['until_iso'])}"
        f"（{s['by']} 搁置，{s.get('approved_by') or '—'} 批准：{s['reason']}）· 红色告警照常通知",
        className="shelf-mark-line") for s in shelves]


def signature(shelves: list[dict[str, Any]]) -> list[Any]:
    """What the marker shows depends on: a page's tick sends nothing while it is unchanged."""
    return [[s["shelf_id"], s["until"]] for s in shelves]
