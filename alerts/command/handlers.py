"""What each staff command does, inside the alerts service (on its engine thread).

Each handler reuses the one decision its command has (the close guard, archive, the dispatch book,
shelving) against the service's own store, then hands the changed alert to the engine (`adopt`), which
updates what it holds and publishes the change. A refusal changes nothing and says why.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from alerts.archive import archive
from alerts.command import Answer, Command
from alerts.dispatch import DispatchBook, Refused, link_for
from alerts.guard import Closed, Policy
from alerts.guard import resolve as guard_resolve
from alerts.patrols import CheckIn, Plans, advance_hazard, check_in
from alerts.preferences import PreferenceBook, PreferenceError
from alerts.shelving import ShelfError, shelve
from alerts.store import Store
from alerts.teams import TeamsError, load_teams
from core.contract import Alert
from core.settings import Settings
from core.staff import open_accounts
from core.timebase import iso, now_iso, parse_iso

if TYPE_CHECKING:
    from alerts.engine import Engine

log = logging.getLogger(__name__)


def closed_answer(out: Closed) -> Answer:
    """A close's answer: the alert (new state on 200, current on a refusal), the error, the live reading."""
    return Answer(out.status, {"alert": out.alert.as_json() if out.alert else None, "error": out.error,
                               "live": out.live.as_json() if out.live else None})


def refused(exc: Refused) -> Answer:
    return Answer(exc.status, {**(exc.body or {}), "error": exc.message})


class Handlers:
    def __init__(self, settings: Settings, store: Store, engine: Engine, dispatches: DispatchBook) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.dispatches = dispatches
        self.policy = Policy.of(settings)
        self.device_kind: Callable[[str], str | None] = lambda _d: None
        self.plans: Callable[[], Plans] = lambda: Plans({})  # the patrol plans in force (the service's)
        self.checked_in: Callable[[str, str, float], None] = lambda _p, _c, _t: None  # tells the patrol book
        self.preferences = PreferenceBook(store)  # the service hands its own (the one its notifier reads)

    def apply(self, cmd: Command) -> Answer:
        # The close guard reads the conditions from the store: written now, it judges the reading the
        # engine has just handled, not the one of its last tick.
        self.engine.save(seen=False)
        fn = getattr(self, f"do_{cmd.name}")
        try:
            out: Answer = fn(cmd.actor, **cmd.args)
            return out
        except Refused as exc:
            return refused(exc)
        except (ShelfError, TeamsError, PreferenceError) as exc:
            return Answer(400, {"error": str(exc)})
        except TypeError as exc:  # a required argument missing
            return Answer(400, {"error": f"bad {cmd.name} command: {exc}"})

    def _adopt(self, alert: Alert | None) -> None:
        if alert is not None:
            self.engine.adopt(alert)

    # -- an alert's state
    def do_ack(self, actor: str | None, alert_id: str, note: str | None = None) -> Answer:
        alert = self.store.acknowledge(alert_id, actor or "", note or None, now_iso())
        if alert is None:
            cur = self.store.get(alert_id)
            if cur is None:
                return Answer(404, {"alert": None, "error": f"no alert {alert_id}"})
            return Answer(409, {"alert": cur.as_json(), "error": f"alert {alert_id} is already {cur.state}"})
        self._adopt(alert)
        return Answer(200, {"alert": alert.as_json(), "error": None, "live": None})

    def do_resolve(self, actor: str | None, alert_id: str, note: str | None = None,
                   override: bool = False) -> Answer:
        out = guard_resolve(self.store, self.policy, alert_id, actor, note, override=override is True)
        if out.status == 200:
            self._adopt(out.alert)
            log.info("alert %s resolved by hand (%s)%s", alert_id, actor or "unknown",
                     " OVER a live reading" if out.live else "")
        return closed_answer(out)

    def do_archive(self, actor: str | None, alert_id: str, cause: str = "", note: str | None = None,
                   override: bool = False) -> Answer:
        done = archive(self.store, alert_id, actor or "", cause or "", note, now_iso(), policy=self.policy,
                       override=override is True)
        return Answer(200, done.as_json())

    # -- dispatch (派单) and the field steps
    def do_dispatch(self, actor: str | None, alert_id: str, team: str, deadline: str, member: str | None = None,
                    note: str | None = None) -> Answer:
        teams = load_teams(self.settings.dispatch_teams_file)
        t = teams.get(team)
        if t is None:
            return Answer(400, {"error": f"unknown team {team!r}; use {', '.join(teams.teams)}"})
        m = t.member(member) if member else None
        if member and m is None:
            return Answer(400, {"error": f"team {t.team_id} has no member {member!r}"})
        dl = parse_iso(deadline)
        if dl is None:
            return Answer(400, {"error": '"deadline" must be an ISO-8601 time'})
        d = self.dispatches.create(alert_id, t, m, iso(dl.timestamp()), actor or "", note, time.time())
        return Answer(201, {**d.as_json(), "link": link_for(self.settings, d)})

    def do_dispatch_cancel(self, actor: str | None, dispatch_id: str, note: str | None = None) -> Answer:
        return Answer(200, self.dispatches.cancel(dispatch_id, actor or "", note, time.time()).as_json())

    def do_accept(self, actor: str | None, dispatch_id: str, name: str | None = None) -> Answer:
        return Answer(200, self.dispatches.accept(dispatch_id, time.time(), name).as_json())

    def do_arrive(self, actor: str | None, dispatch_id: str) -> Answer:
        return Answer(200, self.dispatches.arrive(dispatch_id, time.time()).as_json())

    def do_feedback(self, actor: str | None, dispatch_id: str, cause: str, action: str, text: str = "",
                    photos: list[str] | None = None, remeasure: str | None = None,
                    reason: str | None = None) -> Answer:
        try:
            raw = [base64.b64decode(p, validate=True) for p in photos or []]
        except (binascii.Error, TypeError):
            return Answer(400, {"error": "photos must be base64"})
        d = self.dispatches.feedback(dispatch_id, cause, action, text, raw, time.time(), remeasure=remeasure,
                                     reason=reason)
        return Answer(200, d.as_json())

    # -- shelving (搁置)
    def do_shelve(self, actor: str | None, scope: str, target: str, reason: str, seconds: float,
                  approved_by: str | None = None, every: str | None = None) -> Answer:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            return Answer(400, {"error": "seconds must be a number"})
        accounts = open_accounts(self.settings)

        def role(name: str) -> str | None:
            a = accounts.get(name)
            return a.role if a is not None else None

        approver = accounts.get((approved_by or "").strip()) if approved_by else None
        if approver is not None and actor and approver.name == actor:  # the console signs with the display name
            raise ShelfError("refused: the approver must be a second person, not the one who shelves "
                             "(批准人不能是搁置人本人)")
        shelf = shelve(self.store, scope, target, float(seconds), reason, actor or "", approved_by=approved_by,
                       approver_role=role, rules=self.engine.rules, device_kind=self.device_kind, every=every)
        self.engine.shelves_changed()
        return Answer(201, shelf)

    def do_unshelve(self, actor: str | None, shelf_id: int) -> Answer:
        if not isinstance(shelf_id, int) or not self.store.unshelve(shelf_id, actor or "", now_iso()):
            return Answer(404, {"error": f"no live shelf {shelf_id}"})
        self.engine.shelves_changed()
        return Answer(200, {"shelf_id": shelf_id, "ended_by": actor})

    # -- a person's notification preferences (alerts/preferences.py)
    def do_preferences(self, actor: str | None, person: str, channels: list[str], quiet: str | None = None) -> Answer:
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            return Answer(400, {"error": "channels must be a list of channel names"})
        if quiet is not None and not isinstance(quiet, str):
            return Answer(400, {"error": 'quiet must be like "22:00-07:00"'})
        escalation = self.engine.escalation
        who = next((p for p in escalation.roster.people() if p.pid == person), None) if escalation else None
        if who is None:
            return Answer(404, {"error": f"值班表中没有人员 {person!r} (no person {person!r} in the on-call roster)"})
        prefs = self.preferences.set(who, channels, quiet, actor or "", now_iso())
        log.info("notification preferences of %s set by %s: %s", person, actor or "unknown", prefs.as_json())
        return Answer(200, {"preferences": prefs.as_json(), "name": who.name})


    # -- patrols (巡检) and hazards (隐患)
    def do_patrol_checkin(self, actor: str | None, plan_id: str, checkpoint: str, lon: float, lat: float,
                          accuracy_m: float | None = None, findings: str = "", deadline_days: int | None = None,
                          photos: list[str] | None = None) -> Answer:
        plans = self.plans()
        if not plans.plans:
            return Answer(404, {"error": "未配置巡检计划（SC_PATROLS_FILE）。"})
        done = check_in(self.store, plans, CheckIn(plan_id, checkpoint, lon, lat, accuracy_m, findings or "",
                                                   deadline_days, list(photos or [])),
                        actor or "", time.time(), self.settings.data_path, self.settings.dispatch_photo_max_bytes,
                        added=self.checked_in)
        log.info("patrol %s checked in at %s by %s%s", plan_id, checkpoint, actor or "unknown",
                 f", hazard {done['hazard']['hazard_id']} opened" if done["hazard"] else "")
        return Answer(201, done)

    def do_hazard_rectify(self, actor: str | None, hazard_id: str, note: str = "",
                          photos: list[str] | None = None) -> Answer:
        h = advance_hazard(self.store, hazard_id, "rectified", actor or "", note, photos, time.time(),
                           self.settings.data_path, self.settings.dispatch_photo_max_bytes)
        return Answer(200, {"hazard": h})

    def do_hazard_close(self, actor: str | None, hazard_id: str, note: str = "") -> Answer:
        h = advance_hazard(self.store, hazard_id, "closed", actor or "", note, None, time.time(),
                           self.settings.data_path, self.settings.dispatch_photo_max_bytes)
        return Answer(200, {"hazard": h})


def answer_of(store: Store, cmd: Command) -> Answer | None:
    """A command applied before: its kept answer, or (applied, answer lost in a stop) the state now."""
    got = store.command(cmd.command_id)
    if got is None:
        return None
    status, body = got
    if status is not None and body is not None:
        return Answer(status, {**body, "replayed": True})
    alert_id = cmd.args.get("alert_id")
    alert = store.get(alert_id) if isinstance(alert_id, str) else None
    return Answer(200, {"alert": alert.as_json() if alert else None, "error": None, "live": None,
                        "replayed": True, "applied_before_restart": True})
