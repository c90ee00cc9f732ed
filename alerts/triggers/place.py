"""Place rules: most devices of one place (a compound, or a whole community) silent or offline at
once — one alert for the place, the devices' own silence folded under it (`share` of the devices
that have ever reported, at least `min_devices`). And `not_reporting`: devices that have never
reported, one notice per community. Evaluated by the liveness scan (alerts/liveness.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.validation import Record

if TYPE_CHECKING:
    from alerts.rules import Rule
    from alerts.triggers import Verdict

NAME = "place"
KEYS = frozenset({"place", "share", "min_devices", "what"})
PLACES = ("compound", "community")
WHATS = ("silent", "never_reported")


def validate(rule: Rule) -> str | None:
    if rule.place not in PLACES:
        return f"place must be one of {PLACES}"
    if rule.what not in WHATS:
        return f"what must be one of {WHATS}"
    if rule.what == "silent" and not (0 < (rule.share or 0) <= 1 and (rule.min_devices or 0) >= 1):
        return "a place silence rule needs 0 < share ≤ 1 and min_devices ≥ 1"
    return None


def evaluate(rule: Rule, rec: Record, mem: dict[str, Any] | None) -> tuple[Verdict | None, Any]:
    return None, None
