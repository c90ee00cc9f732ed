"""Staff actions from the /api, the console buttons and the field page, as commands to the alerts
service (alerts/command/): the dashboard never writes the alert store nor publishes on `sc/alerts`;
the service applies each action, publishes it and answers with the new state or a refusal. The
service down answers 503 and nothing is half-done. Each action is audited here, with its outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from alerts.command import Answer, Command, ServiceDown
from alerts.command.client import send
from alerts.dispatch import Refused
from alerts.guard import Closed, Live, Policy, danger
from alerts.store import Store
from core.contract import Alert
from core.settings import Settings
from dashboard.scope import refusal, scoped_store
from dashboard.security import audit_action, audit_refusal

log = logging.getLogger(__name__)

_LIVE_FIELDS = set(Live.__dataclass_fields__)
# The audit log's name of each command (ack and resolve are audited by their own methods below).
AUDIT_NAME = {"archive": "alert.archive", "dispatch": "alert.dispatch", "dispatch_cancel": "dispatch.cancel",
              "accept": "dispatch.accept", "arrive": "dispatch.arrive", "feedback": "dispatch.feedback",
              "shelve": "shelf.create", "unshelve": "shelf.end", "patrol_checkin": "patrol.checkin",
              "hazard_rectify": "hazard.rectify", "hazard_close": "hazard.close", "preferences": "preferences.set"}
AUDIT_FIELD = {"target": "shelf_target", "action": "action_taken", "photos": "photo_count"}  # the line's own fields


def closed_of(answer: Answer) -> Closed:
    """The service's answer to a close (ack / resolve) as the pages and the /api use it."""
    b = answer.body
    live = b.get("live")
    return Closed(Alert.from_json(b["alert"]) if b.get("alert") else None, answer.status, b.get("error"),
                  Live(**{k: v for k, v in live.items() if k in _LIVE_FIELDS}) if live else None)


class AlertActions:
    """The one door of staff actions: reads (the live reading) from the store, changes by command."""

    def __init__(self, store: Store, settings: Settings, policy: Policy | None = None) -> None:
        self.store = store
        self.settings = settings
        self.policy = policy or Policy.of(settings)
        # Told of every change a command here made (the service's answer): the dashboard's live state,
        # so every open page (an /api call's too) shows it on its next tick, not after the change feed.
        self.listeners: list[Callable[[Alert], Any]] = []

    def _changed(self, answer: Answer) -> None:
        alert = answer.body.get("alert") if answer.ok else None
        if not isinstance(alert, dict):
            return
        changed = Alert.from_json(alert)
        for fn in self.listeners:
            try:
                fn(changed)
            except Exception:
                log.exception("alert action listener failed")

    def send(self, command: str, actor: str | None, via: str, **args: Any) -> Answer:
        """One command; the service down is a 503 answer (nothing applied). About an alert, dispatch or
        shelf outside the acting person's scope it is a 404, as if there were none (nothing sent)."""
        refused = refusal(self.store, command, args) if via != "field" else None  # a field link is its own credential
        if refused is not None:
            audit_refusal("scope", refused[0], command=command)
            return Answer(refused[0], {"error": refused[1], "alert": None, "live": None})
        try:
            answer = send(self.settings, Command(command, {k: v for k, v in args.items() if v is not None}, actor, via))
        except ServiceDown as exc:
            log.warning("%s by %s not applied: %s", command, actor, exc)
            return Answer(503, {"error": str(exc), "alert": None, "live": None})
        self._changed(answer)
        return answer

    def act(self, command: str, actor: str | None, via: str, **args: Any) -> Answer:
        """One command, audited with its outcome (who, what, the answer's status and refusal)."""
        answer = self.send(command, actor, via, **args)
        detail = {AUDIT_FIELD.get(k, k): (len(v) if k == "photos" else v) for k, v in args.items() if v is not None}
        target = next((str(args[k]) for k in ("alert_id", "dispatch_id", "target", "shelf_id", "hazard_id", "plan_id",
                                              "person")
                       if args.get(k)), None)
        audit_action(AUDIT_NAME.get(command, command), target, "ok" if answer.ok else "refused", answer.status,
                     by=actor, via=via, error=None if answer.ok else answer.body.get("error"), **detail)
        return answer

    def must(self, command: str, actor: str | None, via: str, **args: Any) -> dict[str, Any]:
        """One command (audited) whose refusal (or the service down) is raised as `Refused` with its reason."""
        answer = self.act(command, actor, via, **args)
        if not answer.ok:
            body = {k: v for k, v in answer.body.items() if k not in ("error", "alert", "live", "status")}
            raise Refused(answer.status, str(answer.body.get("error") or "refused"), body or None)
        return answer.body

    def acknowledge(self, alert_id: str, by: str, note: str | None, via: str = "api") -> Closed:
        out = closed_of(self.send("ack", by, via, alert_id=alert_id, note=note))
        audit_action("alert.acknowledge", alert_id, "ok" if out.status == 200 else "refused", out.status,
                     by=by, note=note, error=out.error)
        return out

    def live(self, alert_id: str) -> Live | None:
        """The reading that would refuse a close now (for the confirm dialogs), or None."""
        a = scoped_store(self.store).get(alert_id)
        return danger(self.store, a, self.policy) if a is not None and a.state != "resolved" else None

    def resolve(self, alert_id: str, by: str | None, note: str | None, override: bool = False,
                via: str = "api") -> Closed:
        """Resolve by hand; the service asks the close guard (alerts/guard.py): refused while the danger
        is measured, unless `override` with a reason in `note`."""
        out = closed_of(self.send("resolve", by, via, alert_id=alert_id, note=note, override=override or None))
        audit_action("alert.resolve", alert_id, "ok" if out.status == 200 else "refused", out.status, by=by,
                     note=note, error=out.error, override=bool(override and out.live is not None),
                     live_value=out.live.value if out.live is not None else None)
        return out
