"""Inhibition (as Alertmanager's `inhibit_rules`): while a *source* alert is open, the *target* alerts it
causes on the same place are muted — an open 疑似停电 (power outage) of a compound mutes the low water
pressure of its booster pumps and its cameras' offline alerts. A muted alert is raised and recorded like
every other (an `inhibited` step on its timeline naming its cause, "｜因「疑似停电」抑制" on its message)
but, like a shelved one (alerts/shelving.py), neither published to on-call tools nor notified; when its
cause is no longer open it comes back by itself (an `uninhibited` step, published, notified), unless its
own condition is clearing by then. A life-safety alarm (red, or anything about gas: `shelving.life_safety`)
is never muted, and a rule that names one as a target is refused when rules.yaml loads.

`inhibit_rules:` in rules.yaml, each:

    - name: power_outage_mutes_its_effects
      source: {rules: [power_outage]}                       # matchers: `rules` and/or `kinds`
      target: {rules: [water_pressure_low, camera_offline], kinds: [water, camera]}
      equal: [compound_id]                                  # labels that must be the same (compound_id, community)
      reason: "..."                                         # why (for the reader of the file)

Which open alert mutes which is decided here only (`Index.cause`): the engine asks it every tick and
the dashboard and /api ask it to link a muted alert to its cause.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.rules import BUNDLED_RULES, Rule, RuleError, load_ruleset
from alerts.shelving import life_safety, rule_is_life_safety
from core.contract import KINDS, Alert, AlertState

EQUAL_LABELS = ("compound_id", "community")
KEYS = frozenset({"name", "source", "target", "equal", "reason"})
MATCHER_KEYS = frozenset({"rules", "kinds"})
WORDS = "因「{title}」抑制"  # what a muted alert says of its cause (message, timeline, pages)
MARK = "｜" + WORDS  # appended to a muted alert's message while it is muted
_MARK = re.compile(r"｜因「[^」]*」抑制")


@dataclass(frozen=True)
class Matcher:
    """An alert matches when its rule is one of `rules` (if given) and its kind one of `kinds` (if given)."""

    rules: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()

    def matches(self, a: Alert) -> bool:
        return (not self.rules or a.rule in self.rules) and (not self.kinds or (a.kind or "") in self.kinds)


@dataclass(frozen=True)
class Inhibit:
    name: str
    source: Matcher
    target: Matcher
    equal: tuple[str, ...]
    reason: str = ""

    def labels(self, a: Alert) -> tuple[str, ...] | None:
        """The alert's values of the `equal` labels; None when one is empty (no place to be equal on)."""
        vals = tuple(str(getattr(a, k) or "") for k in self.equal)
        return None if not all(vals) else vals


def _matcher(d: Any, at: str, rules: Mapping[str, Rule], target: bool) -> Matcher:
    if not isinstance(d, dict) or not d or set(d) - MATCHER_KEYS:
        raise RuleError(f"{at}: a matcher is a mapping with `rules` and/or `kinds` (lists), not {d!r}")
    got: dict[str, frozenset[str]] = {}
    for key in ("rules", "kinds"):
        v = d.get(key)
        if v is None:
            continue
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise RuleError(f"{at}: {key} is a non-empty list of names")
        got[key] = frozenset(v)
    unknown = sorted(got.get("rules", frozenset()) - set(rules))
    if unknown:
        raise RuleError(f"{at}: unknown rules {unknown}")
    bad_kinds = sorted(got.get("kinds", frozenset()) - set(KINDS))
    if bad_kinds:
        raise RuleError(f"{at}: unknown kinds {bad_kinds}; one of {list(KINDS)}")
    if target:
        danger = sorted(n for n in got.get("rules", ()) if rule_is_life_safety(rules[n]))
        if danger or "gas" in got.get("kinds", ()):
            raise RuleError(f"{at}: a life-safety alarm (gas, or a rule that can be red) is never muted: "
                            f"{danger or ['kind gas']}")
        if "rules" not in got:
            raise RuleError(f"{at}: a target names the `rules` it mutes (kinds alone would mute every rule)")
    return Matcher(got.get("rules", frozenset()), got.get("kinds", frozenset()))


def parse(items: Any, rules: Mapping[str, Rule], where: Callable[[int, Any], str]) -> list[Inhibit]:
    """The `inhibit_rules` of a rules file, checked; `RuleError` naming the bad entry (`where(i, item)`)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise RuleError(f"{where(-1, None)}: `inhibit_rules` is a list")
    out: list[Inhibit] = []
    for i, d in enumerate(items):
        at = where(i, d)
        if not isinstance(d, dict):
            raise RuleError(f"{at}: an inhibit rule is a mapping (name, source, target, equal), not {d!r}")
        missing = sorted({"name", "source", "target", "equal"} - set(d))
        if missing:
            raise RuleError(f"{at}: missing {missing}")
        unknown = sorted(set(d) - KEYS)
        if unknown:
            raise RuleError(f"{at}: unknown keys {unknown}; an inhibit rule has {sorted(KEYS)}")
        if not isinstance(d["name"], str) or not d["name"].strip():
            raise RuleError(f"{at}: name must be text")
        eq = d["equal"]
        if not isinstance(eq, list) or not eq or set(eq) - set(EQUAL_LABELS):
            raise RuleError(f"{at}: equal is a non-empty list of {list(EQUAL_LABELS)}")
        src = _matcher(d["source"], f"{at}: source", rules, target=False)
        tgt = _matcher(d["target"], f"{at}: target", rules, target=True)
        if src.rules & tgt.rules:
            raise RuleError(f"{at}: a rule cannot mute itself: {sorted(src.rules & tgt.rules)}")
        out.append(Inhibit(d["name"], src, tgt, tuple(eq), str(d.get("reason") or "")))
    names = [x.name for x in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RuleError(f"{where(-1, None)}: duplicate inhibit rule names {dup}")
    return out


class Index:
    """The open alerts that mute others, by (inhibit rule, equal labels): built once, asked per alert."""

    def __init__(self, inhibits: Iterable[Inhibit], open_alerts: Iterable[Alert]) -> None:
        self.inhibits = list(inhibits)
        self.sources: dict[tuple[int, tuple[str, ...]], Alert] = {}
        if not self.inhibits:
            return
        for a in open_alerts:
            if a.state == AlertState.RESOLVED:
                continue
            for i, inh in enumerate(self.inhibits):
                if inh.source.matches(a):
                    labels = inh.labels(a)
                    k = (i, labels) if labels is not None else None
                    # the earliest open source is the cause: the same one whoever asks
                    if k is not None and (k not in self.sources or a.started_at < self.sources[k].started_at):
                        self.sources[k] = a

    def cause(self, a: Alert) -> Alert | None:
        """The open alert that mutes `a`, if any. A life-safety alarm is never muted."""
        if not self.sources or life_safety(a.severity, a.kind) or a.state == AlertState.RESOLVED:
            return None
        for i, inh in enumerate(self.inhibits):
            if inh.target.matches(a):
                labels = inh.labels(a)
                src = self.sources.get((i, labels)) if labels is not None else None
                if src is not None and src.alert_id != a.alert_id:
                    return src
        return None


def mark(message: str, cause_title: str) -> str:
    return unmark(message) + MARK.format(title=cause_title)


def unmark(message: str) -> str:
    return _MARK.sub("", message)


def marked(message: str | None) -> bool:
    return bool(message) and _MARK.search(message or "") is not None


def carry(old: str, new: str) -> str:
    """A muted alert's new message keeps its mark (an update must not unmute it in words)."""
    m = _MARK.search(old)
    return unmark(new) + m.group(0) if m else new


_in_force: dict[str, tuple[tuple[int, int], list[Inhibit]]] = {}


def in_force(path: Path | str | None = None) -> list[Inhibit]:
    """The inhibit rules of a rules file (default the bundled one), re-read when it changes; a file that
    does not load gives the bundled ones (as `rules_in_force`)."""
    p = Path(path) if path else BUNDLED_RULES
    try:
        st = p.stat()
        sig = (st.st_mtime_ns, st.st_size)
    except OSError:
        sig = (-1, -1)
    hit = _in_force.get(str(p))
    if hit is not None and hit[0] == sig:
        return hit[1]
    try:
        got = load_ruleset(p).inhibits
    except RuleError:
        got = load_ruleset(BUNDLED_RULES).inhibits if p != BUNDLED_RULES else []
    _in_force[str(p)] = (sig, got)
    return got


def causes(alerts: Iterable[Alert], open_alerts: Iterable[Alert], path: Path | str | None = None) -> dict[str, Alert]:
    """alert_id -> the open alert muting it, for the muted ones among `alerts` (for pages and /api)."""
    muted = [a for a in alerts if marked(a.message)]
    if not muted:
        return {}
    idx = Index(in_force(path), open_alerts)
    return {a.alert_id: c for a in muted if (c := idx.cause(a)) is not None}
