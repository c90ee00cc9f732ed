"""Flood: a device sending far beyond its per-device budget (ingest dead-letters the excess as
`rate_limited`). Not evaluated per record — that would put a cost on every message — but from the
counts ingest already keeps per device and reports in its heartbeat (`rate_limited_devices`),
looked at once a second by alerts/flooding.py. `threshold`: messages cut within the last minute
before it raises; `params.calm_s`: seconds without a new cut before it clears; `params.place_min`:
this many devices of one compound flooding at once are one alert for the compound (a gateway or a
whole installation misbehaving), not one per device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerts.triggers import Verdict

if TYPE_CHECKING:
    from alerts.rules import Rule

NAME = "flood"
KEYS = frozenset({"threshold", "params"})
CALM_S = 10.0
PLACE_MIN = 3


def validate(rule: Rule) -> str | None:
    if not isinstance(rule.threshold, int | float) or isinstance(rule.threshold, bool) or rule.threshold < 1:
        return "a flood rule's threshold is the number of cut messages (>= 1) that raises it"
    params = rule.params or {}
    if not isinstance(params, dict) or set(params) - {"calm_s", "place_min"}:
        return "params of a flood rule are calm_s and place_min"
    calm = params.get("calm_s", CALM_S)
    if not isinstance(calm, int | float) or calm <= 0:
        return "params.calm_s must be > 0"
    if not isinstance(params.get("place_min", PLACE_MIN), int) or params.get("place_min", PLACE_MIN) < 2:
        return "params.place_min must be a whole number >= 2"
    return None


def calm_s(rule: Rule) -> float:
    return float((rule.params or {}).get("calm_s", CALM_S))


def place_min(rule: Rule) -> int:
    return int((rule.params or {}).get("place_min", PLACE_MIN))


def judge(rule: Rule, cut: int, quiet_s: float) -> Verdict:
    """A device's verdict from its cut count (last minute) and how long since its last new cut."""
    if quiet_s >= calm_s(rule):
        return Verdict.FALSE
    return Verdict.TRUE if cut >= float(rule.threshold or 1) else Verdict.KEEP
