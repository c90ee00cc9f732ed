"""The marker of a live life-safety shelf (a gas rule or device, or a red alarm, shelved with a second
person's approval: alerts/shelving.py), shown on the console and the wall for as long as it lasts —
a silenced gas alarm must never be something the room forgets."""

from __future__ import annotations

import threading
import time
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from alerts.shelving import parse_every
from alerts.store import Store
from core.contract import KIND_LABEL
from core.timebase import local_time

CACHE_S = 2.0  # every open page asks each tick; the store is read at most this often
SCOPE_WORD = {"device": "设备", "compound": "小区", "kind": "设备类型", "rule": "规则"}


class ShelfMarks:
    """Live life-safety shelves from the store, cached briefly."""

    def __init__(self, store: Store) -> None:
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
        f"⚠ 生命安全告警已搁置：{SCOPE_WORD.get(s['scope'], s['scope'])} "
        f"{KIND_LABEL.get(s['target'], s['target']) if s['scope'] == 'kind' else s['target']}"
        f"{' ' + parse_every(s['every']).words() if s.get('every') else ''} 至 {local_time(s['until_iso'])}"
        f"（{s['by']} 搁置，{s.get('approved_by') or '—'} 批准：{s['reason']}）· 红色告警照常通知",
        className="shelf-mark-line") for s in shelves]


def signature(shelves: list[dict[str, Any]]) -> list[Any]:
    """What the marker shows depends on: a page's tick sends nothing while it is unchanged."""
    return [[s["shelf_id"], s["until"]] for s in shelves]


def block(d: Any, prefix: str = "") -> list[Any]:
    """The marker and what its page last showed, for a page's layout (ids `<prefix>shelf-…`)."""
    shelves = d.shelf_marks.live()
    return [dcc.Store(id=f"{prefix}shelf-sig", data=signature(shelves)),
            html.Div(marker(shelves), id=f"{prefix}shelf-marker", className="shelf-mark", role="alert")]


def register(app: Dash, d: Any, tick_id: str, prefix: str = "") -> None:
    """Redraw a page's marker on its tick, only when the live shelves changed."""
    @app.callback(
        Output(f"{prefix}shelf-marker", "children"),
        Output(f"{prefix}shelf-sig", "data"),
        Input(tick_id, "n_intervals"),
        State(f"{prefix}shelf-sig", "data"),
        prevent_initial_call=True,
    )
    def _shelf_marker(_n: int, sig: list[Any] | None) -> tuple[Any, Any]:
        shelves = d.shelf_marks.live()
        now = signature(shelves)
        return (no_update, no_update) if now == sig else (marker(shelves), now)
