"""Shelving / maintenance windows (ISA-18.2 "shelved"): a device, a compound or a rule is shelved for a
set time with a reason (the gas company repairing a main). Alerts raised under a shelf are recorded
and listed, with a `shelved` step on their timeline, but not published to on-call tools nor notified;
when the shelf runs out they come back by themselves (an `unshelved` step, published, notified).
The store keeps the shelves (migration 0007); the engine reads the live ones every tick, so a shelf
written by the CLI or the dashboard applies within a second without a restart.
"""

from __future__ import annotations

import re
import time
from typing import Any

from alerts.store import AlertStore
from core.timebase import iso

SCOPES = ("device", "compound", "rule")
MAX_S = 7 * 24 * 3600  # a week: longer is not maintenance, it is a rule change
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


class ShelfError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """'90s', '45m', '2h', '1d' or plain seconds."""
    m = _DUR.match(text)
    if not m:
        raise ShelfError(f"bad duration {text!r}: use e.g. 30m, 2h, 1d")
    s = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < s <= MAX_S:
        raise ShelfError(f"a shelf lasts more than 0 and at most {MAX_S // 86400} days")
    return s


def shelve(store: AlertStore, scope: str, target: str, duration_s: float, reason: str, by: str,
           now: float | None = None) -> dict[str, Any]:
    if scope not in SCOPES:
        raise ShelfError(f"scope must be one of {SCOPES}")
    if not target.strip() or not reason.strip() or not by.strip():
        raise ShelfError("a shelf needs a target, a reason and who shelved it")
    if not 0 < duration_s <= MAX_S:
        raise ShelfError(f"a shelf lasts more than 0 and at most {MAX_S // 86400} days")
    t = time.time() if now is None else now
    until = t + duration_s
    shelf_id = store.shelve(scope, target.strip(), reason.strip(), by.strip(), until, iso(t), iso(until))
    return next(s for s in store.shelves() if s["shelf_id"] == shelf_id)
