"""Trigger types, one a module (as Home Assistant's triggers/numeric_state.py, state.py, event.py):
each names the rule keys it owns (`KEYS`), checks them (`validate`) and says what one record means
for one rule (`evaluate`). The engine owns the state over time (for_s, hold-off, persistence).

Verdicts: TRUE (the condition holds), FALSE (a clearing reading), KEEP (nothing changes: inside a
hysteresis band, or a reading that says nothing about a latched event) and None (not about this rule).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import Enum
from typing import Any

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
    "!=": operator.ne,
}


class Verdict(Enum):
    TRUE = "true"
    FALSE = "false"
    KEEP = "keep"


# Keys every rule may have, whatever its trigger.
COMMON_KEYS = frozenset({
    "name", "severity", "message", "kind", "trigger", "for_s", "holdoff_s", "suppressed_by", "source",
    "levels", "foldable", "notes", "folds", "watch_s", "title", "description",
})
