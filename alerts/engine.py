"""The rule engine: records in, alert state changes out.

One condition on one subject (a device, or a place for place rules) is one alert: while it is
unresolved, the condition holding again updates it. It resolves by itself only after a clearing
reading and the condition staying clear for the hold-off, so a value wobbling around a threshold
does not flap. Absence of evidence is never a clear: a device that goes quiet while in alarm keeps
its alarm (the silence is written on it), and a restart — even `kill -9` — carries on from the
condition state kept in the store (when each condition became true, when it began to clear, the
trigger's memory, when each device was last heard). `for_s` is measured in device time (payload
ts); hold-off and silence in wall time, which keeps running when a device stops talking.

Floods are folded into places: when most devices of a compound (or a community) are down at once,
one place alert is raised and the devices' own availability alerts (`foldable` rules) are not
raised, or, if already open, are folded under it and no longer notified. Foldable alerts wait
`fold_window_s` before they are raised, so the place alert can form first. An open alert mutes those it
causes (alerts/inhibit.py: a power outage its compound's low water pressure): raised and recorded, not
published nor notified, back when the cause is gone.

What holds over time is decided by the trigger modules with a `scan` (alerts/triggers/: silence,
places, group patterns) over one snapshot per scan; the engine applies their findings. When an
unacknowledged alert goes to the next tier is decided by `Escalation.due` (alerts/notify.py).

The engine is single-threaded: the service feeds it from one queue.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from alerts import inhibit
from alerts.context import summary
from alerts.liveness import Liveness
from alerts.notify import Due, Escalation
from alerts.rules import TRIGGERS, Rule, RuleSet, title_of
from alerts.shelving import in_force, life_safety, never_silenced, shelf_for, step_data
from alerts.store import AlreadyOpen, Store
from alerts.timeline import Event as Step
from alerts.triggers import Act, Finding, ScanView, Subject, Verdict
from core.contract import KINDS, Alert, AlertState, Device
from core.settings import Settings
from core.severity import LEVEL, RANK
from core.timebase import iso
from core.validation import Record, Status

log = logging.getLogger(__name__)

Publish = Callable[[Alert], None]
Surround = Callable[[float, float], dict[str, Any]]
Key = tuple[str, str]
# Only the serious alerts carry their surroundings: a dispatcher needs them, and a burst of
# blue silence alerts should not cost a spatial query each.
SURROUNDED = frozenset({"red", "orange"})
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
ALARM_TRIGGERS = frozenset({"threshold", "count", "rate", "event"})  # a device's own alarms
SILENT_MARK = "｜设备失联"  # appended to an alarm's message while its device is silent
SILENT_KEY = "@silent"  # condition rule name: "this device's silence is written on its alarms"
BAND = 0.1  # a reading moves its alert to another value band every 10 % of the rule's threshold
SEEN_SAVE_S = 30.0
__all__ = ["Condition", "Engine", "Subject"]


def with_surroundings(message: str, nearby: dict[str, Any] | None) -> str:
    line = summary(nearby) if nearby else ""
    return f"{message}; {line}" if line else message


def value_band(value: object, threshold: object) -> object:
    """What of a reading is worth telling anyone: its band of BAND x threshold for a number against a
    numeric threshold (31.0 and 31.4 %LEL are the same news; 31 and 40 are not), else the value itself."""
    if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(threshold, int | float) \
            and not isinstance(threshold, bool) and threshold:
        return int(value // (abs(threshold) * BAND))
    return value


def news_text(message: str) -> str:
    """A message with its numbers taken out: the words that changing numbers do not change."""
    return _DIGITS.sub("#", message)


def new_alert_id() -> str:
    return "a-" + uuid.uuid4().hex[:16]


@dataclass(slots=True)
class Condition:
    """What the engine knows of one (rule, subject); persisted in the store's `conditions` table."""

    true_since_ts: int | None = None  # device time the condition became true (for for_s)
    clear_since: float | None = None  # wall time it last became clear, while an alert is open
    last_value: Any = None
    last_evidence: float | None = None  # wall time of the last record that said anything about it
    mem: dict[str, Any] = field(default_factory=dict)  # the trigger's memory (count edges, last event)
    last_published: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return {"true_since_ts": self.true_since_ts, "clear_since": self.clear_since,
                "last_value": self.last_value, "last_evidence": self.last_evidence,
                "data": {k: v for k, v in self.mem.items() if k != "prev"}}


@dataclass
class Pending:
    """A foldable alert waiting out the fold window."""

    since: float
    rule: Rule
    dev: Device
    value: Any
    message: str
    threshold: Any


class Engine:
    def __init__(
        self,
        rules: list[Rule] | RuleSet,
        store: Store,
        publish: Publish,
        holdoff_s: float,
        update_min_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        surroundings: Surround | None = None,
        escalation: Escalation | None = None,
        fold_window_s: float = 0.0,
        watch_s: float = Settings.alerts_watch_s,
        on_reopen: Callable[[Alert], None] | None = None,
    ) -> None:
        self.store = store
        self.publish = publish
        self.holdoff_s = holdoff_s
        self.update_min_s = update_min_s
        self.clock = clock
        self.surroundings = surroundings
        self.escalation = escalation
        self.fold_window_s = fold_window_s
        self.watch_s = watch_s  # after a close, a re-rise within this long reopens it (a rule's watch_s wins)
        self.on_reopen = on_reopen  # tells the teams dispatched to a reopened alert (alerts/dispatch.py)
        self.memory: dict[str, Any] = {}  # scan trigger NAME -> what it keeps of the messages
        self.set_rules(rules if isinstance(rules, RuleSet) else RuleSet(list(rules)))
        self.open: dict[Key, Alert] = {}
        self.pending: dict[Key, Pending] = {}
        self.folded: dict[str, str] = {}  # alert_id -> the place alert it is folded under
        self.shelved: dict[str, int] = {}  # alert_id -> shelf id (recorded, not notified)
        self.inhibited: dict[str, str] = {}  # alert_id -> the open alert muting it (alerts/inhibit.py)
        self._causes: inhibit.Index | None = None  # the open alerts that mute, until one opens or closes
        self.live_shelves: list[dict[str, Any]] = []
        self.folding: dict[str, set[str]] = {}  # place id -> rules whose device alerts are folded there
        self.member_of: dict[str, Key] = {}  # device -> the group alert key it is a member of
        # Alerts back from a shelf: escalation counts from their return, not from when they were raised.
        self.escalate_from: dict[str, float] = {}
        self.reminded_at: dict[str, float] = {}  # alert_id -> when everyone told was last told (in memory)
        self._deleted: set[Key] = set()
        self._dirty: set[Key] = set()
        self.started = clock()
        # Silence is measured from when our own feed was last restored: a broker outage (or our own
        # restart) is not thousands of silent devices.
        self.feed_since = self.started
        # Carry on from where the last run stopped: conditions and last-heard times from the store.
        self.conditions: dict[Key, Condition] = {}
        for key, row in store.load_conditions().items():
            self.conditions[key] = Condition(row["true_since_ts"], row["clear_since"], row["last_value"],
                                             row["last_evidence"], dict(row["data"]))
        self.last_seen: dict[str, float] = store.load_seen()
        self._recent: dict[str, float] = {}  # heard since the last scan / save
        self._unsaved: dict[str, float] = {}  # heard since the last-heard times were saved
        self._seen_saved_at = self.started
        self.silent_noted: set[str] = {k[1] for k in self.conditions if k[0] == SILENT_KEY}
        self.offline_ids: set[str] = set()  # last status offline (a will): down, but has reported
        self.live: Liveness | None = None
        self._live_registry: Mapping[str, Device] | None = None
        self.resync()
        # An alert open in the store whose condition we know nothing of stays open: absence of
        # evidence is not a clear. It resolves on a clearing reading (and the hold-off) or by hand.
        for key in self.open:
            self.conditions.setdefault(key, Condition())
        self._load_inhibited()
        self._load_shelves(self.started)

    # -- rules --------------------------------------------------------------------------------
    def set_rules(self, ruleset: RuleSet) -> None:
        """Install a (re)loaded rule set; open alerts and condition state carry on."""
        rules = ruleset.rules
        self.ruleset = ruleset
        self.rules = rules
        self.by_name = {r.name: r for r in rules}
        # Per kind, every record rule that applies to it (its own and the kind-less ones), built
        # once: the lookup on each message allocates nothing and never misses a kind.
        self.by_kind: dict[str, list[Rule]] = {
            k: [r for r in rules if hasattr(r.mod, "evaluate") and r.kind in (k, None)] for k in KINDS
        }
        self.fast: dict[str, list[tuple[Rule, Any, Any, bool]]] = {
            k: [(r, r.mod.evaluate, getattr(r.mod, "wants_memory", None), hasattr(r.mod, "scan")) for r in rs]
            for k, rs in self.by_kind.items()}
        # The triggers that decide over time (a `scan`), each with its rules in force, and what those
        # keep of the messages between scans (`memory`, fed by `track` on each message).
        self.scanners: list[tuple[ModuleType, list[Rule]]] = []
        memory: dict[str, Any] = {}
        self.trackers: list[tuple[Callable[[Any, Record], None], Any]] = []
        for name, mod in TRIGGERS.items():
            mine = [r for r in rules if r.trigger == name]
            if not mine or not hasattr(mod, "scan"):
                continue
            self.scanners.append((mod, mine))
            if hasattr(mod, "memory"):
                memory[name] = mod.memory(mine, self.memory.get(name))
                if hasattr(mod, "track"):  # a memory kept from elsewhere (the patrol book) reads no message
                    self.trackers.append((mod.track, memory[name]))
        self.memory = memory
        self.parents_of: dict[str, list[Rule]] = {}
        for r in rules:
            for child in r.folds:
                self.parents_of.setdefault(child, []).append(r)
        self.ov_dev, self.ov_cmp = ruleset.variants()
        self.inhibits = ruleset.inhibits
        self._causes = None

    def _rule_for(self, rule: Rule, dev: Device) -> Rule:
        if self.ov_dev or self.ov_cmp:
            return self.ov_dev.get((rule.name, dev.device_id)) or self.ov_cmp.get(
                (rule.name, dev.compound_id)) or rule
        return rule

    # -- input ------------------------------------------------------------------------------
    def handle(self, rec: Record) -> None:
        now = self.clock()
        dev = rec.device
        dev_id = dev.device_id
        if type(rec) is Status and rec.state != "online":
            # An `offline` status (often the broker delivering the device's last will) is not the
            # device talking: it must not end, or restart, a silence.
            self.offline_ids.add(dev_id)
            if self.live is not None:
                self.live.went_offline(dev_id)
        else:
            self._recent[dev_id] = now  # applied to the liveness arrays at the next scan
            if dev_id in self.offline_ids:
                self.offline_ids.discard(dev_id)
            if dev_id in self.silent_noted:
                self._device_back(dev, now)
        for track, mem in self.trackers:
            track(mem, rec)
        overrides = self.ov_dev or self.ov_cmp
        conditions, open_, pending = self.conditions, self.open, self.pending
        for rule, evaluate, stateful, scanned in self.fast[dev.kind]:
            if overrides:
                rule = self._rule_for(rule, dev)
                evaluate = rule.mod.evaluate
            key = (rule.name, dev_id)
            if scanned and key not in open_ and key not in pending:
                continue  # raised by the scan (a silence); a message only matters to an open one
            c = conditions.get(key)
            if c is None and stateful is not None and stateful(rule, rec):
                c = conditions[key] = Condition()
            verdict, value = evaluate(rule, rec, c.mem if c is not None else None)
            if verdict is None:
                continue
            is_open = key in open_
            if verdict is Verdict.FALSE or (verdict is Verdict.KEEP and not is_open):
                if pending:
                    pending.pop(key, None)
                if c is None:
                    continue
                if c.true_since_ts is not None:
                    c.true_since_ts = None
                    self._dirty.add(key)
                if is_open:
                    c.last_value, c.last_evidence = value, now
                    self._dirty.add(key)  # the close guard (alerts/guard.py) reads the latest reading
                    if c.clear_since is None and verdict is Verdict.FALSE and not rule.latch:
                        c.clear_since = now
                        self._dirty.add(key)
                elif not c.mem:
                    self._forget(key)
                continue
            if c is None:
                c = self.conditions[key] = Condition()
            c.last_value, c.last_evidence = value, now
            if key in open_:
                self._dirty.add(key)  # the close guard (alerts/guard.py) reads the latest reading
            if verdict is Verdict.KEEP:
                continue  # inside the hysteresis band: neither raise again nor start the hold-off
            if c.true_since_ts is None:
                c.true_since_ts = rec.ts_ms
                self._dirty.add(key)
            if rule.for_s and rec.ts_ms - c.true_since_ts < rule.for_s * 1000:
                continue
            detail = getattr(rec, "detail", "")
            self._fire(rule, dev, value, now, rule.render(value=value, detail=detail))

    def _forget(self, key: Key) -> None:
        if self.conditions.pop(key, None) is not None:
            self._deleted.add(key)
            self._dirty.discard(key)

    def tick(self) -> None:
        """Periodic work: shelves, hold-off resolution, escalation,
        pending foldable alerts, and saving the condition state."""
        now = self.clock()
        self._load_shelves(now)
        self._check_inhibits(now)
        for key, alert in list(self.open.items()):
            c = self.conditions.get(key)
            rule = self.by_name.get(alert.rule)
            hold = rule.holdoff_s if rule is not None and rule.holdoff_s is not None else self.holdoff_s
            if c is not None and c.clear_since is not None and now - c.clear_since >= hold:
                self._resolve(key, alert, now)
            elif self.escalation is not None and self._notifiable(alert):
                due = self.escalation.due(alert, now, self.escalate_from.get(alert.alert_id),
                                          self.reminded_at.get(alert.alert_id))
                if due is not None:
                    self._escalate(key, alert, due, now)
        self._raise_pending(now)
        self.save()

    def _escalate(self, key: Key, alert: Alert, due: Due, now: float) -> None:
        """Apply what the escalation decided (alerts/notify.py): the next tier, or a reminder."""
        assert self.escalation is not None
        if due.what == "escalate":
            who = {"tier": due.tier, "to": self.escalation.told_at(alert, due.tier)}
            up = self.store.update(alert.alert_id, step=(Step.ESCALATED, iso(now), None, who),
                                   escalation_tier=due.tier, updated_at=iso(now))
            if up is not None and up.state == "active":
                self.open[key] = up
                log.warning("escalated %s to tier %d: nobody acknowledged it", up.alert_id, due.tier)
                self.publish(up)
                self.escalation.escalated(up)
                self.reminded_at[alert.alert_id] = now  # just told: the next reminder counts from here
            return
        self.reminded_at[alert.alert_id] = now
        told = self.escalation.remind(alert)
        self.store.record(alert.alert_id, Step.REMINDED, iso(now), data={"to": [p.name for p in told]})
        log.warning("reminded everyone told of %s: still unacknowledged", alert.alert_id)

    def _flush_recent(self) -> None:
        """Move what was heard since the last call into last_seen, the liveness arrays and the to-save set."""
        if not self._recent:
            return
        recent, self._recent = self._recent, {}
        self.last_seen.update(recent)
        self._unsaved.update(recent)
        if self.live is not None:
            self.live.heard_many(recent)
            for dev_id in self.offline_ids.intersection(recent):
                self.live.went_offline(dev_id)

    def save(self, seen: bool | None = None) -> None:
        """Write the condition state that changed (one transaction); the last-heard times every
        SEEN_SAVE_S (they only tell "has reported" apart from "never", and silence after a restart
        counts from the restart anyway), or now with `seen=True`."""
        ups = [(k[0], k[1], self.conditions[k].as_row()) for k in self._dirty if k in self.conditions]
        dels = [k for k in self._deleted if k not in self.conditions]
        self.store.save_conditions(ups, dels)
        self._dirty.clear()
        self._deleted.clear()
        now = self.clock()
        if seen is None:
            seen = now - self._seen_saved_at >= SEEN_SAVE_S
        if seen:
            self._flush_recent()
            if self._unsaved:
                unsaved, self._unsaved = self._unsaved, {}
                self.store.save_seen(list(unsaved.items()))
            self._seen_saved_at = now

    def feed_restored(self) -> None:
        """Our subscription is back after an outage: restart every silence clock from now."""
        self.feed_since = self.clock()

    # -- silence and places -----------------------------------------------------------------
    def _liveness(self, registry: Mapping[str, Device]) -> Liveness:
        if self.live is None or self._live_registry is not registry:
            self._flush_recent()
            self.live = Liveness(registry, self.last_seen)
            for dev_id in self.offline_ids:
                self.live.went_offline(dev_id)
            self._live_registry = registry
        return self.live

    def check_silence(self, registry: Mapping[str, Device]) -> None:
        """The periodic scan: every trigger with a `scan` decides over one snapshot (place, group,
        silence ...), then the engine applies what they found, places before devices."""
        now = self.clock()
        live = self._liveness(registry)
        self._flush_recent()
        if not live.devices:
            return
        kw: dict[str, float] = {}
        for mod, rules in self.scanners:
            if hasattr(mod, "liveness"):
                kw.update(mod.liveness(rules))
        view = ScanView(now, live, live.scan(now, self.feed_since, **kw), self.open, self.conditions,
                        frozenset(self._alarm_index()), self._settled(live, now), self.fold_window_s, self.memory)
        self._apply_scan([f for mod, rules in self.scanners for f in mod.scan(rules, view)], live, now)
        self._raise_pending(now)

    def _apply_scan(self, findings: list[Finding], live: Liveness, now: float) -> None:
        """Apply one scan's findings. Places first: a device alert is folded under the place alert
        that stands for it, so that one must be raised before the devices' are looked at."""
        folding: dict[str, set[str]] = {}
        member_of: dict[str, Key] = {}
        for f in findings:
            if f.holds:
                for m in f.members:  # members may lie in neighbouring compounds (main_burst)
                    member_of[m] = f.key
                if f.rule.folds:
                    for p in (f.subject, *f.members):
                        folding.setdefault(p, set()).update(f.rule.folds)
        for f in findings:
            if f.device is None:
                self._apply_one(f, now)
        self.folding, self.member_of = folding, member_of
        if folding:
            self._fold_in(live, now)
        for f in findings:
            if f.device is not None:
                self._apply_one(f, now)

    def _apply_one(self, f: Finding, now: float) -> None:
        key = f.key
        if f.act is Act.CLEAR:
            if key in self.open:
                self._clear(key, now)
            else:
                self._forget(key)
            return
        if f.act is Act.SILENT_IN_ALARM:
            assert f.device is not None
            self._note_silence(f.device, now)
            return
        c = self.conditions.setdefault(key, Condition())
        if c.true_since_ts is None:
            c.true_since_ts = int(now * 1000)
            self._dirty.add(key)
        if f.act is Act.FOLD:
            a, parent = self.open.get(key), self.open.get(f.parent) if f.parent else None
            if a is not None and parent is not None and a.alert_id not in self.folded:
                self._fold(a, parent, now)
        elif f.act is Act.RAISE and f.device is not None:
            c.last_value, c.last_evidence = f.value, now  # the close guard (alerts/guard.py) shows it
            self._fire(f.rule, f.device, f.value, now, f.message, threshold=f.threshold)
        elif f.act is Act.RAISE and f.place is not None:
            # A place's value may reach a level of its rule too (a patrol missed twice in a row).
            level = f.rule.level_of(f.value) if f.rule.levels else None
            severity = f.rule.severity
            message = f.message
            if level is not None and RANK[level.severity] > RANK[severity]:
                severity = level.severity
                message = f"{message} [{level.label}]" if level.label else message
            self._fire_subject(f.rule, f.place, f.value, now, message, f.threshold, severity,
                               level.label if level else None)

    def _fold(self, a: Alert, parent: Alert, now: float) -> None:
        """Fold an alert under the one that stands for it (once: a timeline step, no more notifications)."""
        self.folded[a.alert_id] = parent.alert_id
        self.store.record(a.alert_id, Step.FOLDED, iso(now), note=f"归并到「{title_of(parent.rule)}」",
                          data={"parent": parent.alert_id})

    def _alarm_index(self) -> set[str]:
        """Devices with an open alarm of their own (not an availability or place alert)."""
        out = set()
        for (rule_name, subject), a in self.open.items():
            r = self.by_name.get(rule_name)
            if a.device_id and subject == a.device_id and (r is None or r.trigger in ALARM_TRIGGERS):
                out.add(a.device_id)
        return out

    def _folded_here(self, rule_name: str, dev: Device) -> bool:
        f = self.folding
        return bool(f) and any(rule_name in f.get(p, ()) for p in (
            dev.device_id, dev.compound_id, dev.community, str(dev.extra.get("building_id", ""))))

    def _parent_for(self, rule_name: str, dev: Device) -> Alert | None:
        group_key = self.member_of.get(dev.device_id)
        if group_key is not None and group_key in self.open and rule_name in self.by_name[group_key[0]].folds:
            return self.open[group_key]
        for r in self.parents_of.get(rule_name, ()):
            pid = {"compound": dev.compound_id, "community": dev.community,
                   "building": str(dev.extra.get("building_id", ""))}.get(r.mod.place_of(r), dev.compound_id)
            a = self.open.get((r.name, pid))
            if a is not None:
                return a
        return None

    def _fold_in(self, live: Liveness, now: float) -> None:
        """Device alerts a place/group alert stands for: open ones are folded under the parent (once:
        timeline step, no more notifications); pending ones are not raised while their place is down."""
        for (rule_name, subject), a in list(self.open.items()):
            if a.alert_id in self.folded or subject != a.device_id or rule_name not in self.parents_of:
                continue
            i = live.index.get(a.device_id)
            if i is None:
                continue
            dev = live.devices[i]
            if not self._folded_here(rule_name, dev):
                continue
            parent = self._parent_for(rule_name, dev)
            if parent is not None:
                self._fold(a, parent, now)

    def _alarms_of(self, device_id: str) -> list[Key]:
        """The open alarms of one device (its own alerts, not availability or place ones)."""
        out = []
        for k, a in self.open.items():
            r = self.by_name.get(k[0])
            if a.device_id == device_id and k[1] == device_id and (r is None or r.trigger in ALARM_TRIGGERS):
                out.append(k)
        return out

    def _note_silence(self, dev: Device, now: float) -> None:
        """A device in alarm went quiet: its alarm stays, and says so (timeline step + message)."""
        key = (SILENT_KEY, dev.device_id)
        if dev.device_id in self.silent_noted:
            return
        self.silent_noted.add(dev.device_id)
        self.conditions[key] = Condition(clear_since=None, last_evidence=self.last_seen.get(dev.device_id))
        self._dirty.add(key)
        for k in self._alarms_of(dev.device_id):
            a = self.open[k]
            msg = a.message if SILENT_MARK in a.message else a.message + SILENT_MARK
            up = self.store.update(a.alert_id, step=(Step.DEVICE_SILENT, iso(now), "设备在报警中失联, 报警保持",
                                                     {"last_heard": iso(self.last_seen.get(dev.device_id, now))}),
                                   message=msg, updated_at=iso(now))
            if up is not None:
                self.open[k] = up
                self._publish(up)
                log.warning("device %s silent while in alarm %s: the alarm stays", dev.device_id, a.alert_id)

    def _device_back(self, dev: Device, now: float) -> None:
        self.silent_noted.discard(dev.device_id)
        self._forget((SILENT_KEY, dev.device_id))
        for k in self._alarms_of(dev.device_id):
            a = self.open[k]
            up = self.store.update(a.alert_id, step=(Step.DEVICE_BACK, iso(now), "设备恢复上报", None),
                                   message=a.message.replace(SILENT_MARK, ""), updated_at=iso(now))
            if up is not None:
                self.open[k] = up
                self._publish(up)

    def _settled(self, live: Liveness, now: float) -> bool:
        """Since our feed (re)started, has every device had time to report twice? Before that, not
        seeing a place's pattern is absence of evidence, not a clear (after a restart, a reconnect)."""
        return now - self.feed_since >= 2 * float(live.interval.max(initial=0.0)) + 5

    # -- conditions judged outside the per-message path (alerts/flooding.py) ----------------------
    def holds(self, rule: Rule, dev: Device, value: object, now: float, message: str) -> None:
        """A device's condition holds now: raised (or kept open) as a reading past a threshold would be."""
        self._fire(rule, dev, value, now, message)

    def holds_for(self, rule: Rule, subj: Subject, value: object, now: float, message: str,
                  threshold: object, severity: str) -> None:
        """A place's (or any subject's) condition holds now."""
        self._fire_subject(rule, subj, value, now, message, threshold, severity)

    def clears(self, key: Key, now: float) -> None:
        """The condition of `key` (rule, subject) no longer holds: resolved after its hold-off."""
        self._clear(key, now)

    # -- state changes ----------------------------------------------------------------------
    def _fire(
        self, rule: Rule, dev: Device, value: object, now: float, message: str,
        threshold: object | None = None,
    ) -> None:
        key = (rule.name, dev.device_id)
        if key not in self.open:
            if any((r, dev.device_id) in self.open for r in rule.suppressed_by):
                return
            if rule.foldable and self.fold_window_s > 0:
                p = self.pending.get(key)
                if p is None:
                    self.pending[key] = Pending(now, rule, dev, value, message, threshold)
                    return
                p.value, p.message, p.threshold = value, message, threshold
                if now - p.since < self.fold_window_s:
                    return
                if self._folded_here(rule.name, dev) or self._parent_for(rule.name, dev) is not None:
                    # Its place is down: one alert for the place stands for it. It stays pending: if the
                    # place comes back while this condition still holds, it is raised then.
                    return
                self.pending.pop(key, None)
            self._supersede(rule, dev.device_id, now)
        level = rule.level_of(value) if rule.levels else None
        severity = level.severity if level is not None and RANK[level.severity] > RANK[rule.severity] else rule.severity
        if level is not None:
            message = f"{message} [{level.label}]" if level.label else message
        self._fire_subject(rule, Subject.of(dev), value, now, message,
                           rule.threshold if threshold is None else threshold, severity, level.label if level else None)

    def _raise_pending(self, now: float) -> None:
        for p in list(self.pending.values()):
            if now - p.since >= self.fold_window_s:
                self._fire(p.rule, p.dev, p.value, now, p.message, p.threshold)

    def _fire_subject(self, rule: Rule, subj: Subject, value: object, now: float, message: str,
                      threshold: object, severity: str, level: str | None = None) -> None:
        key = (rule.name, subj.key)
        c = self.conditions.setdefault(key, Condition())
        if c.clear_since is not None:
            c.clear_since = None
            self._dirty.add(key)
        alert = self.open.get(key)
        if alert is None and self._reopen(rule, subj, key, c, value, now, message, severity):
            return
        if alert is None:
            nearby = None
            if self.surroundings is not None and severity in SURROUNDED and subj.lon is not None:
                try:
                    nearby = self.surroundings(subj.lon, subj.lat)  # type: ignore[arg-type]
                except Exception:  # an alert without context beats no alert
                    log.exception("no surroundings for %s", subj.key)
                message = with_surroundings(message, nearby)
            alert = Alert(
                alert_id=new_alert_id(), rule=rule.name, severity=severity,
                state=str(AlertState.ACTIVE), community=subj.community, compound_id=subj.compound_id,
                device_id=subj.device_id, kind=subj.kind, metric=rule.metric, value=value,  # type: ignore[arg-type]
                threshold=threshold, lon=subj.lon, lat=subj.lat,  # type: ignore[arg-type]
                started_at=iso(now), updated_at=iso(now), message=message, nearby=nearby,
                escalation_tier=1,
            )
            try:
                self.store.insert(alert, subject=subj.key)
            except AlreadyOpen:
                # Raised elsewhere (another engine instance): adopt it.
                self.resync()
                return
            self.open[key] = alert
            self._opened(alert)
            c.last_published = now
            self._save_now(key, c)
            shelf = shelf_for(self.live_shelves, alert)
            if shelf is not None and never_silenced(alert.severity):
                self._shelf_overridden(alert, shelf, now)
            elif shelf is not None:
                self.shelved[alert.alert_id] = shelf["shelf_id"]
                self.store.record(alert.alert_id, Step.SHELVED, iso(now), by=shelf["by"], note=shelf["reason"],
                                  data=step_data(shelf, now))
                log.info("raised %s %s on %s under shelf %s: recorded, not notified",
                         alert.alert_id, rule.name, subj.key, shelf["shelf_id"])
                return
            cause = self._cause_of(alert)
            if cause is not None:
                self._inhibit(key, alert, cause, now)
                return
            log.info("raised %s %s on %s: %s", alert.alert_id, rule.name, subj.key, message)
            self._publish(alert)
            self._notify("raised", alert)
            return
        rises = RANK.get(severity, 0) > RANK.get(alert.severity, 0)
        new_level = level is not None and level not in alert.message
        if alert.message.endswith(SILENT_MARK) and not message.endswith(SILENT_MARK):
            message += SILENT_MARK
        if alert.nearby:
            message = with_surroundings(message, alert.nearby)
        message = inhibit.carry(alert.message, message)
        # Published only when there is news (severity, level, value band or wording), never on a timer:
        # an unchanged alert re-sent every few seconds is noise on every subscriber (ISA-18.2).
        news = rises or new_level or value_band(value, threshold) != value_band(alert.value, alert.threshold) \
            or news_text(message) != news_text(alert.message)
        if not news or (not rises and not new_level and now - c.last_published < self.update_min_s):
            return
        changes: dict[str, Any] = {"value": value, "updated_at": iso(now), "message": message}
        step = None
        if rises or new_level:
            was = f"{LEVEL.get(alert.severity, alert.severity)}"
            changes["message"] = f"{message} (由{was}升级为{LEVEL.get(severity, severity)})" if rises else message
            changes["severity"] = severity
            step = (Step.SEVERITY_RAISED, iso(now), level,
                    {"from": alert.severity, "to": severity, "value": value, "level": level})
        updated = self.store.update(alert.alert_id, step=step, **changes)
        if updated is None:  # resolved by hand meanwhile: a condition still true raises anew
            self.open.pop(key, None)
            self._fire_subject(rule, subj, value, now, message, threshold, severity, level)
            return
        self.open[key] = updated
        c.last_published = now
        if updated.alert_id in self.inhibited and life_safety(updated.severity, updated.kind):
            # Risen to red while muted: a life-safety alarm is never muted; told below as it rose.
            self._uninhibit(key, updated, now, why="生命安全告警 (红色/燃气) 不受抑制", tell=False)
            updated = self.open[key]
        if updated.alert_id in self.shelved and never_silenced(updated.severity):
            # Risen to red under a shelf: a life-safety alarm is never silent.
            shelf_id = self.shelved.pop(updated.alert_id)
            self._shelf_overridden(updated, next((s for s in self.live_shelves if s["shelf_id"] == shelf_id),
                                                 {"shelf_id": shelf_id, "by": None, "reason": None, "until": now}),
                                   now)
            self._publish(updated)
            self._notify("raised", updated)
            return
        if updated.alert_id in self.shelved:
            return
        if updated.alert_id in self.inhibited:
            return
        self._publish(updated)
        if rises:
            log.warning("severity of %s rose %s -> %s", updated.alert_id, alert.severity, severity)
            self._notify("raised", updated)

    def _watch_of(self, rule_name: str) -> float:
        rule = self.by_name.get(rule_name)
        return rule.watch_s if rule is not None and rule.watch_s is not None else self.watch_s

    def _save_now(self, key: Key, c: Condition) -> None:
        """Write one condition at once (a raise, a reopen): the close guard must never see an open
        alert without the reading that opened it."""
        self.store.save_conditions([(key[0], key[1], c.as_row())], [])
        self._dirty.discard(key)

    def _reopen(self, rule: Rule, subj: Subject, key: Key, c: Condition, value: object, now: float,
                message: str, severity: str) -> bool:
        """Within the watch after a close, the condition holding again reopens the same incident (复燃):
        same alert_id, `active`, one roster tier up, published, and everyone told of it told again."""
        w = self.store.watch_for(rule.name, subj.key)
        if w is None or float(w["until"]) <= now:
            return False
        old = self.store.get(w["alert_id"])
        if old is None or old.state != AlertState.RESOLVED:
            return False
        tier = old.escalation_tier or 1
        top = self.escalation.roster.max_tier(old.community) if self.escalation is not None else tier + 1
        tier = max(tier, min(tier + 1, top))
        sev = severity if RANK.get(severity, 0) >= RANK.get(old.severity, 0) else old.severity
        n = old.reopened + 1
        text = with_surroundings(f"【复燃·第{n}次】{message}", old.nearby)
        up = self.store.reopen(old.alert_id, iso(now), {
            "value": value, "severity": sev, "tier": tier, "closed_at": iso(float(w["closed_at"])),
            "closed_by": old.resolved_by, "from_tier": old.escalation_tier or 1,
        }, severity=sev, value=value, message=text, escalation_tier=tier)
        if up is None:
            return False
        self.open[key] = up
        self._opened(up)
        c.last_published = now
        self._save_now(key, c)
        self.escalate_from[up.alert_id] = now  # the next tier counts from the reopening
        log.warning("REOPENED %s (%s on %s, %d time(s)) within its watch: %s", up.alert_id, rule.name, subj.key,
                    n, message)
        shelf = shelf_for(self.live_shelves, up)
        if shelf is not None and not never_silenced(up.severity):
            self.shelved[up.alert_id] = shelf["shelf_id"]
            self.store.record(up.alert_id, Step.SHELVED, iso(now), by=shelf["by"], note=shelf["reason"],
                              data=step_data(shelf, now))
            return True
        if shelf is not None:
            self._shelf_overridden(up, shelf, now)
        cause = self._cause_of(up)
        if cause is not None:
            self._inhibit(key, up, cause, now)
            return True
        self._publish(up)
        self._notify("reopened", up)
        if self.on_reopen is not None:
            try:
                self.on_reopen(up)
            except Exception:  # a dispatch message problem never stops the engine
                log.exception("could not tell the teams dispatched to %s", up.alert_id)
        return True

    def _publish(self, alert: Alert) -> None:
        if alert.alert_id not in self.shelved and alert.alert_id not in self.inhibited:
            self.publish(alert)

    def _notifiable(self, alert: Alert) -> bool:
        return (alert.alert_id not in self.shelved and alert.alert_id not in self.folded
                and alert.alert_id not in self.inhibited)

    def _notify(self, what: str, alert: Alert) -> None:
        """The one narrow call into notification (raised / resolved); escalation is in tick()."""
        if self.escalation is None or not self._notifiable(alert):
            return
        try:
            if what == "raised":
                self.escalation.raised(alert)
            elif what == "resolved":
                self.escalation.resolved(alert)
            elif what == "reopened":
                self.escalation.reopened(alert)
        except Exception:  # a notification problem never stops the engine
            log.exception("notification of %s (%s) failed", alert.alert_id, what)

    def _supersede(self, rule: Rule, device_id: str, now: float) -> None:
        """Close the open alerts this rule's alert makes redundant on the same device."""
        for other in self.rules:
            key = (other.name, device_id)
            if rule.name in other.suppressed_by and key in self.open:
                self._resolve(key, self.open[key], now, note=f"由「{rule.label}」取代")

    def _clear(self, key: Key, now: float) -> None:
        if key in self.open:
            c = self.conditions.setdefault(key, Condition())
            if c.clear_since is None:
                c.clear_since = now
                self._dirty.add(key)

    def _resolve(self, key: Key, alert: Alert, now: float, note: str | None = None) -> None:
        done = self.store.resolve(alert.alert_id, iso(now), note=note, watch_s=self._watch_of(alert.rule))
        self.open.pop(key, None)
        self._forget(key)
        if done is not None:
            log.info("resolved %s (%s on %s)", alert.alert_id, alert.rule, alert.device_id)
            self.publish(done)  # also when shelved: the resolution clears any copy
            self._notify("resolved", done)
        self._let_go(alert.alert_id)

    def _let_go(self, alert_id: str) -> None:
        """An alert no longer open: nothing more to shelve, fold, escalate or remind of it."""
        self.shelved.pop(alert_id, None)
        self.inhibited.pop(alert_id, None)
        self._causes = None  # it may have been muting others
        self.folded.pop(alert_id, None)
        self.escalate_from.pop(alert_id, None)
        self.reminded_at.pop(alert_id, None)

    def _watch_closed(self, key: Key, alert: Alert) -> None:
        """Put a hand-closed alert's condition under watch, unless the close already did (alerts/guard.py)."""
        w = self.store.watch_for(*key)
        if w is None or w["alert_id"] != alert.alert_id:
            now = self.clock()
            self.store.set_watch(key[0], key[1], alert.alert_id, now, now + self._watch_of(alert.rule))

    def resync(self) -> None:
        """Adopt the store's view: acknowledgements and resolutions made by hand (each puts its
        condition under watch: alerts/guard.py writes it; a close by another path gets it here)."""
        fresh = self.store.open_alerts()
        for key in list(self.open):
            if key not in fresh:
                a = self.open.pop(key)
                self._watch_closed(key, a)
                self._let_go(a.alert_id)
                self._forget(key)
        for key, alert in fresh.items():
            self.open[key] = alert
        self._causes = None

    def in_memory(self) -> list[tuple[Alert, str, dict[str, Any] | None]]:
        """Each open alert as held here, with its subject and condition state: what a store that lost
        acknowledged commits in a failover writes again (alerts/holdover.py)."""
        return [(a, key[1], self.conditions[key].as_row() if key in self.conditions else None)
                for key, a in list(self.open.items())]

    def adopt(self, alert: Alert) -> None:
        """A change a person made by command (alerts/command/): held here at once and published; a
        close tells everyone who was told of the alert, as a close by the engine does."""
        key = next((k for k, a in self.open.items() if a.alert_id == alert.alert_id), None)
        if key is None:  # a row this engine did not raise (written before it started): its place from the store
            got = self.store.condition_of(alert.alert_id)
            if got is None:
                return
            key = (alert.rule, got[1])
        if alert.state != AlertState.RESOLVED:
            self.open[key] = alert
            self._publish(alert)
            return
        self.open.pop(key, None)
        self._watch_closed(key, alert)
        self.publish(alert)  # also when shelved: the resolution clears any copy
        self._notify("resolved", alert)
        self._let_go(alert.alert_id)
        # The condition is kept: closed by hand over a live reading, the danger is still what was last
        # measured (an archive is refused on it, alerts/guard.py) until a reading says otherwise — a
        # clear one forgets it, one still in alarm reopens the alert within its watch.

    def shelves_changed(self) -> None:
        self._load_shelves(self.clock())

    def republish(self) -> int:
        """Publish every open alert (retained) from the store: after a start, or when a retained copy
        was cleared by someone while the alert is open. Shelved alerts are not on the broker."""
        n = 0
        for alert in self.store.open_alerts().values():
            if alert.alert_id not in self.shelved and alert.alert_id not in self.inhibited:
                self.publish(alert)
                n += 1
        return n

    # -- shelving -----------------------------------------------------------------------------
    def _shelf_overridden(self, alert: Alert, shelf: dict[str, Any], now: float) -> None:
        """A red or gas alert under a shelf: written on its timeline, and told as every other."""
        self.store.record(alert.alert_id, Step.SHELVED, iso(now), by=shelf["by"], note=shelf["reason"],
                          data={**step_data(shelf, now), "notified": True,
                                "why": "生命安全告警 (红色/燃气) 搁置期间照常发布和通知"})
        log.warning("%s (%s, %s) under shelf %s: life-safety, published and notified all the same",
                    alert.alert_id, alert.rule, alert.severity, shelf["shelf_id"])

    def _load_shelves(self, now: float) -> None:
        # A recurring window is live all its series long but mutes only inside its hours.
        self.live_shelves = [s for s in self.store.shelves(live_at=now) if in_force(s, now)]
        for alert in list(self.open.values()):
            shelf = shelf_for(self.live_shelves, alert)
            if never_silenced(alert.severity) and alert.alert_id not in self.shelved:
                continue  # never silenced by a shelf
            was = self.shelved.get(alert.alert_id)
            if shelf is not None and was is None:
                self.shelved[alert.alert_id] = shelf["shelf_id"]
                # Once per muting: a weekly window shelves an alert again each time it opens.
                last = next((st for st in reversed(self.store.timeline(alert.alert_id))
                             if st.event in (Step.SHELVED, Step.UNSHELVED)), None)
                if last is None or last.event != Step.SHELVED or last.data.get("shelf_id") != shelf["shelf_id"]:
                    self.store.record(alert.alert_id, Step.SHELVED, iso(now), by=shelf["by"], note=shelf["reason"],
                                      data=step_data(shelf, now))
            elif shelf is None and was is not None:
                # The shelf ran out (or was ended): the alert comes back, published and notified.
                del self.shelved[alert.alert_id]
                self.escalate_from[alert.alert_id] = now
                self.store.record(alert.alert_id, Step.UNSHELVED, iso(now), data={"shelf_id": was})
                log.info("shelf %s over: %s is back", was, alert.alert_id)
                self._publish(alert)  # still muted by its cause: it comes back when that one goes
                self._notify("raised", alert)

    # -- inhibition (alerts/inhibit.py) -------------------------------------------------------
    def _inhibit(self, key: Key, alert: Alert, cause: Alert, now: float) -> None:
        """Mute an alert while its cause is open: a timeline step and the mark on its message, in one write."""
        title = title_of(cause.rule)
        rule = next((i.name for i in self.inhibits if i.source.matches(cause) and i.target.matches(alert)), None)
        up = self.store.update(alert.alert_id, step=(Step.INHIBITED, iso(now), inhibit.WORDS.format(title=title),
                                                     {"cause": cause.alert_id, "cause_rule": cause.rule,
                                                      "inhibit": rule}),
                               message=inhibit.mark(alert.message, title), updated_at=iso(now))
        if up is None:
            return
        self.open[key] = up
        self.inhibited[up.alert_id] = cause.alert_id
        log.info("%s (%s on %s) muted by %s (%s): recorded, not notified", up.alert_id, up.rule,
                 up.device_id or up.compound_id, cause.alert_id, cause.rule)

    def _uninhibit(self, key: Key, alert: Alert, now: float, why: str | None = None, tell: bool = True) -> None:
        """The cause is gone (or the alert turned life-safety): back, published and notified."""
        was = self.inhibited.pop(alert.alert_id, None)
        data: dict[str, Any] = {"cause": was}
        if why:
            data["why"] = why
        up = self.store.update(alert.alert_id, step=(Step.UNINHIBITED, iso(now), why, data),
                               message=inhibit.unmark(alert.message), updated_at=iso(now))
        if up is None:
            return
        self.open[key] = up
        self.escalate_from[up.alert_id] = now  # the next tier counts from its return
        log.info("%s no longer muted (cause %s): published and notified", up.alert_id, was)
        if tell:
            self._publish(up)
            self._notify("raised", up)

    def _check_inhibits(self, now: float) -> None:
        """Mute open targets whose cause is open; bring back those whose cause is gone (once their own
        condition is not clearing: an alert about to resolve by itself is not news)."""
        if not self.inhibits and not self.inhibited:
            return
        idx = self._causes = inhibit.Index(self.inhibits, self.open.values())
        for key, alert in list(self.open.items()):
            was = self.inhibited.get(alert.alert_id)
            cause = idx.cause(alert)
            if was is None:
                if cause is not None:
                    self._inhibit(key, alert, cause, now)
                continue
            if cause is not None:
                self.inhibited[alert.alert_id] = cause.alert_id
                continue
            c = self.conditions.get(key)
            if c is not None and c.clear_since is not None and not life_safety(alert.severity, alert.kind):
                continue
            self._uninhibit(key, alert, now)

    def _opened(self, alert: Alert) -> None:
        if self._causes is not None and any(i.source.matches(alert) for i in self.inhibits):
            self._causes = None  # a new cause, perhaps

    def _cause_of(self, alert: Alert) -> Alert | None:
        """The open alert muting a newly raised or reopened one. The index of causes is built once and kept
        until an alert that can mute opens or any alert closes (a flood of raises must not rebuild it each)."""
        if not self.inhibits:
            return None
        if self._causes is None:
            self._causes = inhibit.Index(self.inhibits, self.open.values())
        return self._causes.cause(alert)

    def _load_inhibited(self) -> None:
        """After a (re)start: the open alerts muted when the last run stopped (their mark), with the cause
        their last `inhibited` step names; the first tick brings back those whose cause is gone."""
        for alert in self.open.values():
            if inhibit.marked(alert.message):
                step = next((st for st in reversed(self.store.timeline(alert.alert_id))
                             if st.event == Step.INHIBITED), None)
                self.inhibited[alert.alert_id] = str(step.data.get("cause", "")) if step is not None else ""
