"""Alert rules: loaded from YAML (bundled `rules.yaml` or `SC_ALERTS_RULES_FILE`) and checked.

Each rule has one trigger type (alerts/triggers/: threshold, state, event, count, rate, absence,
place, fluctuation, ...); `trigger:` names it, or it is inferred from the keys. `overrides:` set other values of a
rule for one compound or device (a boiler room runs hotter). A bad file is refused whole with
file, line and reason (`RuleError`); the caller keeps the rules it had.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

import alerts.triggers
from alerts.triggers import COMMON_KEYS, OPS
from core.contract import KINDS, METRICS
from core.plugins import modules_in
from core.severity import RANK, Severity
from core.validation import Record

if TYPE_CHECKING:
    from alerts.inhibit import Inhibit

BUNDLED_RULES = Path(__file__).with_name("rules.yaml")
# Every module of alerts/triggers/ with a NAME is a trigger type: a new one is a new module there.
TRIGGERS: dict[str, ModuleType] = {m.NAME: m for m in modules_in(alerts.triggers, having="NAME")}
__all__ = ["OPS", "TRIGGERS", "Level", "Override", "Rule", "RuleError", "RuleSet", "load_rules", "load_ruleset",
           "rules_in_force", "title_of"]


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Level:
    """A higher level of the same alert: when the value also passes `threshold` (same op)."""

    threshold: float
    severity: str
    label: str = ""


@dataclass(frozen=True)
class Rule:
    name: str  # an id (topics, API, files); never shown to staff: they read `title`
    severity: str
    message: str
    title: str = ""  # the Chinese name on every page, message, report and CLI line (`title_of`)
    description: str = ""  # one sentence: when it fires
    kind: str | None = None
    trigger: str | None = None
    metric: str | None = None
    op: str | None = None
    threshold: float | bool | None = None
    for_s: float = 0.0
    status: str | None = None
    event: str | None = None
    silent_factor: float | None = None
    # Rules of the same device whose open alert makes this one redundant (a warning under a
    # critical alarm): it is not raised while they are open, and is closed when they are raised.
    suppressed_by: tuple[str, ...] = ()
    clear_op: str | None = None
    clear_threshold: float | bool | None = None
    clear_metric: str | None = None
    latch: bool = False
    holdoff_s: float | None = None  # how long clear before it resolves (default SC_ALERT_HOLDOFF_S)
    # After a close, how long a re-rise reopens the same alert (default SC_ALERTS_WATCH_S).
    watch_s: float | None = None
    levels: tuple[Level, ...] = ()
    count: int | None = None
    window_s: float | None = None
    min_dt_s: float | None = None
    place: str | None = None
    share: float | None = None
    min_devices: int | None = None
    what: str | None = None
    foldable: bool = False  # folded under a place/group alert that stands for it (waits the fold window)
    pattern: str | None = None
    folds: tuple[str, ...] = ()  # place/group rules: the rules whose device alerts this one stands for
    radius_m: float | None = None
    params: dict[str, Any] | None = None
    source: str = ""  # the standard or rule of practice it comes from
    notes: str = ""

    @property
    def mod(self) -> ModuleType:
        return TRIGGERS[self.trigger or "threshold"]

    def check(self, rec: Record, mem: dict[str, Any] | None = None) -> tuple[bool | None, Any]:
        """(condition, value) for one record; condition None when the record says nothing here
        (kept for callers of the first engine; the engine itself uses `mod.evaluate`)."""
        if self.kind is not None and rec.device.kind != self.kind:
            return None, None
        evaluate = getattr(self.mod, "evaluate", None)  # a scan-only trigger says nothing of one record
        if evaluate is None:
            return None, None
        verdict, value = evaluate(self, rec, {} if mem is None else mem)
        if verdict is None:
            return None, None
        return verdict.name == "TRUE", value

    def level_of(self, value: Any) -> Level | None:
        """The highest extra level the value reaches, if any."""
        best = None
        for lv in self.levels:
            try:
                if OPS[self.op or ">="](value, lv.threshold):
                    best = lv
            except TypeError:
                return None
        return best

    def render(self, **fields: Any) -> str:
        unit = METRICS.get(self.kind or "", {}).get(self.metric or "")
        values = {"value": None, "threshold": self.threshold, "detail": "", "interval_s": 0.0,
                  "silent_s": 0.0, "unit": unit.unit if unit else "", "place": "", "n": 0, "total": 0}
        values.update(fields)
        try:
            return self.message.format(**values).strip()
        except (ValueError, TypeError, KeyError, IndexError):
            return f"{self.label}: {values['value']}"

    @property
    def label(self) -> str:
        """What staff read for this rule: its title (a rule file without one shows its name)."""
        return self.title or self.name


@dataclass(frozen=True)
class Override:
    """Other values of one rule for one compound or one device."""

    rule: str
    compound: str | None
    device: str | None
    values: dict[str, Any]


@dataclass
class RuleSet:
    rules: list[Rule]
    overrides: list[Override] = dataclasses.field(default_factory=list)
    source: str = ""
    inhibits: list[Inhibit] = dataclasses.field(default_factory=list)  # alerts/inhibit.py

    def variants(self) -> tuple[dict[tuple[str, str], Rule], dict[tuple[str, str], Rule]]:
        """(rule, device) → rule and (rule, compound) → rule with the overrides applied."""
        base = {r.name: r for r in self.rules}
        by_dev: dict[tuple[str, str], Rule] = {}
        by_cmp: dict[tuple[str, str], Rule] = {}
        for o in self.overrides:
            r = dataclasses.replace(base[o.rule], **o.values)
            if o.device:
                by_dev[(o.rule, o.device)] = r
            else:
                by_cmp[(o.rule, o.compound or "")] = r
        return by_dev, by_cmp


def _infer_trigger(d: dict[str, Any]) -> str:
    if "trigger" in d:
        return str(d["trigger"])
    if "pattern" in d:
        return "group"
    if "place" in d:
        return "place"
    if "silent_factor" in d:
        return "absence"
    if "event" in d:
        return "event"
    if "status" in d:
        return "state"
    if "count" in d:
        return "count"
    return "threshold"


def _rule_from(d: Any, where: str) -> Rule:
    if not isinstance(d, dict):
        raise RuleError(f"{where}: a rule is a mapping of keys (name, kind, severity, ...), not {d!r}")
    trig = _infer_trigger(d)
    mod = TRIGGERS.get(trig)
    if mod is None:
        raise RuleError(f"{where}: unknown trigger {trig!r}; one of {sorted(TRIGGERS)}")
    unknown = set(d) - set(Rule.__dataclass_fields__)
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    foreign = set(d) - COMMON_KEYS - mod.KEYS
    if foreign:
        raise RuleError(f"{where}: keys {sorted(foreign)} do not belong to a {trig} rule (its keys: "
                        f"{sorted(mod.KEYS)})")
    d = {**d, "trigger": trig}
    if "suppressed_by" in d:
        if not isinstance(d["suppressed_by"], list | tuple | type(None)):
            raise RuleError(f"{where}: suppressed_by is a list of rule names")
        d["suppressed_by"] = tuple(d["suppressed_by"] or ())
    if "folds" in d:
        if not isinstance(d["folds"], list | tuple):
            raise RuleError(f"{where}: folds is a list of rule names")
        d["folds"] = tuple(d["folds"])
    if "levels" in d:
        try:
            d["levels"] = tuple(Level(**lv) for lv in (d["levels"] or ()))
        except TypeError as exc:
            raise RuleError(f"{where}: levels: each level is {{threshold, severity, label}}: {exc}") from None
    try:
        rule = Rule(**d)
    except TypeError as exc:
        raise RuleError(f"{where}: {exc}") from None
    for key, typ in (("name", str), ("message", str), ("severity", str), ("title", str), ("description", str)):
        if not isinstance(getattr(rule, key), typ):
            raise RuleError(f"{where}: {key} must be text")
    for key in ("for_s", "holdoff_s", "window_s", "silent_factor", "watch_s"):
        v = getattr(rule, key)
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool) or v < 0):
            raise RuleError(f"{where}: {key} must be a number ≥ 0")
    if rule.severity not in Severity.__members__.values():
        raise RuleError(f"{where}: severity must be one of red/orange/yellow/blue")
    for lv in rule.levels:
        if lv.severity not in RANK or RANK[lv.severity] < RANK[rule.severity]:
            raise RuleError(f"{where}: a level's severity must be a severity at least the rule's own")
    if rule.kind is not None and rule.kind not in KINDS:
        raise RuleError(f"{where}: unknown kind {rule.kind!r}")
    if rule.metric is not None and (rule.kind is None or rule.metric not in METRICS[rule.kind]):
        raise RuleError(f"{where}: metric {rule.metric!r} is not a {rule.kind} metric")
    if trig in ("threshold", "count", "rate", "event") and rule.kind is None:
        raise RuleError(f"{where}: a {trig} rule needs a kind")
    problem = mod.validate(rule)
    if problem:
        raise RuleError(f"{where}: {problem}")
    return rule


# libyaml's parser where it is built in: the rules file is read at every start of the service (and
# of each test's), and the pure-Python parser took half a second of it.
_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _lines(text: str, key: str) -> list[int]:
    """1-based line of each item of the top-level sequence `key` (for error messages)."""
    try:
        node = yaml.compose(text, Loader=_FAST)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for k, v in node.value:
        if getattr(k, "value", None) == key and isinstance(v, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in v.value]
    return []


def load_ruleset(path: Path | None = None) -> RuleSet:
    p = path or BUNDLED_RULES
    try:
        text = p.read_text(encoding="utf-8")
        doc = yaml.load(text, Loader=_FAST)
    except OSError as exc:
        raise RuleError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise RuleError(f"{p}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    items = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise RuleError(f"{p}: expected a mapping with a non-empty list `rules`")
    lines = _lines(text, "rules")

    def where(i: int, d: Any, what: str = "rule") -> str:
        line = f":{lines[i]}" if i < len(lines) else ""
        name = f" ({d['name']})" if isinstance(d, dict) and isinstance(d.get("name"), str) else ""
        return f"{p}{line}: {what} {i + 1}{name}"

    rules = [_rule_from(d, where(i, d)) for i, d in enumerate(items)]
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RuleError(f"{p}: duplicate rule names {dup}")
    for i, r in enumerate(rules):
        unknown_refs = (set(r.suppressed_by) | set(r.folds)) - set(names)
        if unknown_refs:
            raise RuleError(f"{where(i, items[i])}: suppressed_by/folds name unknown rules {sorted(unknown_refs)}")
    overrides = _overrides(p, text, doc.get("overrides") or [], {r.name: r for r in rules})
    from alerts.inhibit import parse as parse_inhibits  # it builds on Rule: imported once rules exist

    inhibit_lines = _lines(text, "inhibit_rules")

    def inhibit_at(i: int, d: Any) -> str:
        if i < 0:
            return f"{p}"
        line = f":{inhibit_lines[i]}" if i < len(inhibit_lines) else ""
        name = f" ({d['name']})" if isinstance(d, dict) and isinstance(d.get("name"), str) else ""
        return f"{p}{line}: inhibit rule {i + 1}{name}"

    inhibits = parse_inhibits(doc.get("inhibit_rules"), {r.name: r for r in rules}, inhibit_at)
    return RuleSet(rules, overrides, str(p), inhibits)


def _overrides(p: Path, text: str, items: Any, rules: dict[str, Rule]) -> list[Override]:
    if not isinstance(items, list):
        raise RuleError(f"{p}: `overrides` is a list")
    lines = _lines(text, "overrides")
    out = []
    for i, o in enumerate(items):
        at = f"{p}:{lines[i] if i < len(lines) else '?'}: override {i + 1}"
        if not isinstance(o, dict) or "rule" not in o or ("compound" in o) == ("device" in o):
            raise RuleError(f"{at}: an override is a mapping with `rule` and one of `compound` or `device`")
        base = rules.get(o["rule"])
        if base is None:
            raise RuleError(f"{at}: no rule {o['rule']!r}")
        values = {k: v for k, v in o.items() if k not in ("rule", "compound", "device", "reason")}
        allowed = {"threshold", "clear_threshold", "for_s", "holdoff_s", "severity", "levels", "count", "window_s"}
        if not values or set(values) - allowed:
            raise RuleError(f"{at}: an override may set {sorted(allowed)}")
        if "levels" in values:
            values["levels"] = tuple(Level(**lv) for lv in values["levels"] or ())
        try:
            changed = dataclasses.replace(base, **values)
        except TypeError as exc:
            raise RuleError(f"{at}: {exc}") from None
        problem = changed.mod.validate(changed)
        if problem or changed.severity not in RANK:
            raise RuleError(f"{at}: {problem or 'bad severity'}")
        out.append(Override(base.name, o.get("compound"), o.get("device"), values))
    return out


def load_rules(path: Path | None = None) -> list[Rule]:
    return load_ruleset(path).rules


_titles: dict[str, tuple[tuple[int, int], dict[str, Rule]]] = {}


def rules_in_force(path: Path | str | None = None) -> dict[str, Rule]:
    """Name → rule of a rules file (default the bundled one), re-read when the file changes; a file
    that does not load gives the bundled rules (the words must not go missing with a bad edit)."""
    p = Path(path) if path else BUNDLED_RULES
    try:
        st = p.stat()
        mtime = (st.st_mtime_ns, st.st_size)
    except OSError:
        mtime = (-1, -1)
    hit = _titles.get(str(p))
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        rules = {r.name: r for r in load_rules(p)}
    except RuleError:
        rules = {r.name: r for r in load_rules(BUNDLED_RULES)} if p != BUNDLED_RULES else {}
    _titles[str(p)] = (mtime, rules)
    return rules


def title_of(name: str | None, path: Path | str | None = None) -> str:
    """The Chinese title of a rule by its name: the one home of rule wording for pages, messages,
    the report and the CLI. A name no rule file knows (an alert of a rule since removed) is shown
    as it is rather than hidden."""
    if not name:
        return ""
    r = rules_in_force(path).get(name)
    if r is None and path:
        r = rules_in_force(None).get(name)
    return r.label if r is not None else name


def _fires_when(r: Rule) -> str:
    t = r.trigger
    if t == "threshold":
        s = f"`{r.metric}` {r.op} {r.threshold}"
        if r.clear_op:
            s += f" (clears at {r.clear_op} {r.clear_threshold})"
        if r.for_s:
            s += f" for {r.for_s:g} s"
        for lv in r.levels:
            s += f"; {lv.severity} level at {r.op} {lv.threshold:g}: {lv.label}"
        return s
    if t == "state":
        return f"status `{r.status}`, or `{r.metric}` {r.op} {str(r.threshold).lower()}"
    if t == "event":
        end = (f"ends on `{r.clear_metric}` {r.clear_op} {r.clear_threshold} after it, held {r.holdoff_s or 0:g} s,"
               " or by hand") if r.clear_metric else "closed by hand"
        return f"event `{r.event}`; {end}"
    if t == "count":
        return f"{r.count} × `{r.metric}` {r.op} {r.threshold} within {r.window_s or 0:g} s"
    if t == "rate":
        return f"`{r.metric}` changes {r.op} {r.threshold} per minute"
    if t == "absence":
        return f"no message for {r.silent_factor:g} × `interval_s`"
    if t == "place":
        if r.what == "silent":
            return f"≥ {r.share or 0:.0%} (≥ {r.min_devices}) of a {r.place}'s devices down at once"
        return f"devices of a {r.place} that never reported"
    if t == "flood":
        return (f"≥ {r.threshold:g} messages over the device's budget (`rate_limited`) within a minute; "
                f"clears after {TRIGGERS['flood'].calm_s(r):g} s without one")
    if t == "fluctuation":
        p = r.params or {}
        where = f" on devices installed at {p['install']}" if p.get("install") else ""
        return (f"mean of `{r.metric}` over {r.window_s or 0:g} s >= {r.threshold} and reading-to-reading swing "
                f">= {p.get('fluctuation', 0):.0%} of it{where} (clears below {r.clear_threshold})")
    if t == "patrol":
        return "a patrol plan's latest round ended with a checkpoint not checked in (alerts/patrols.py)" + "".join(
            f"; {lv.severity} level at {lv.threshold:g} rounds in a row: {lv.label}" for lv in r.levels)
    return f"pattern `{r.pattern}` (alerts/triggers/group.py)"


def rules_table(rules: list[Rule] | None = None) -> str:
    """The README's table of rules, made from the rules themselves (one home for the facts)."""
    lines = ["| rule | title | trigger | fires when | severity | folds | source |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rules if rules is not None else load_rules():
        folds = ", ".join(f"`{f}`" for f in r.folds)
        lines.append(f"| `{r.name}` | {r.title} | {r.trigger} | {_fires_when(r).replace('|', '/')} | {r.severity} "
                     f"| {folds} | {r.source} |")
    return "\n".join(lines)
