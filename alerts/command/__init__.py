"""Staff commands to the alerts service, the one writer of alert state and the one publisher on
`sc/alerts`.

The console, `/api`, the phone's field page, the CLI and the demo's scripted staff do not write the
alert store: they send a command (acknowledge, resolve, archive, dispatch, a field step, shelve ...)
and get back the service's answer — the new state, or a refusal with its reason. The service applies
commands on its engine thread, between device messages, so what the engine holds in memory and what
the store says never part; it publishes the change itself.

The wire: JSON over HTTP on loopback (`server.py`), on a port the service picks at start and writes,
with a bearer secret, to `<SC_DATA_DIR>/alerts/command.json` (0600): only a process of this system's
user can read it, so only the dashboard and the CLI can command. Each command carries an id: sent
again (a retry after a lost answer, a restart in between) it is answered from the store, never applied
twice. The service down is a clear `ServiceDown` (the web answers 503) and nothing is half-done.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What a command may be, and the arguments each takes (anything else is refused as a bad command).
NAMES: dict[str, frozenset[str]] = {
    "ack": frozenset({"alert_id", "note"}),
    "resolve": frozenset({"alert_id", "note", "override"}),
    "archive": frozenset({"alert_id", "cause", "note", "override"}),
    "dispatch": frozenset({"alert_id", "team", "member", "deadline", "note"}),
    "dispatch_cancel": frozenset({"dispatch_id", "note"}),
    "accept": frozenset({"dispatch_id", "name"}),
    "arrive": frozenset({"dispatch_id"}),
    "feedback": frozenset({"dispatch_id", "cause", "action", "text", "photos", "remeasure", "reason"}),
    "shelve": frozenset({"scope", "target", "reason", "seconds", "approved_by", "every"}),
    "unshelve": frozenset({"shelf_id"}),
    "patrol_checkin": frozenset({"plan_id", "checkpoint", "lon", "lat", "accuracy_m", "findings", "deadline_days",
                                 "photos"}),
    "hazard_rectify": frozenset({"hazard_id", "note", "photos"}),
    "hazard_close": frozenset({"hazard_id", "note"}),
    "preferences": frozenset({"person", "channels", "quiet"}),
}

WAIT_S = 10.0  # how long a sender waits for the engine thread to take a command before it gives up


def endpoint_path(data_dir: Path) -> Path:
    """Where the running service writes its command port and secret."""
    return data_dir / "alerts" / "command.json"


def new_command_id() -> str:
    return f"c-{uuid.uuid4().hex}"


class ServiceDown(Exception):
    """The alerts service cannot take commands now (not running, or too busy): nothing was applied."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: dict[str, Any]
    actor: str | None  # who acts: the authenticated identity (or the field link's assignee)
    via: str  # console, api, cli, field, demo
    command_id: str = field(default_factory=new_command_id)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.command_id, "name": self.name, "args": self.args, "actor": self.actor, "via": self.via}

    @classmethod
    def from_json(cls, doc: Any) -> Command:
        """A command as received; ValueError names what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("a command is a JSON object")
        name, args = doc.get("name"), doc.get("args", {})
        if name not in NAMES:
            raise ValueError(f"unknown command {name!r}; one of {', '.join(NAMES)}")
        if not isinstance(args, dict) or set(args) - NAMES[name]:
            raise ValueError(f"command {name} takes {', '.join(sorted(NAMES[name]))}")
        cid, actor, via = doc.get("id"), doc.get("actor"), doc.get("via", "api")
        if not isinstance(cid, str) or not 8 <= len(cid) <= 80:
            raise ValueError("a command needs an id (8..80 characters)")
        if actor is not None and not isinstance(actor, str):
            raise ValueError("actor must be a string")
        return cls(name, args, actor, str(via)[:20], cid)


@dataclass(frozen=True, slots=True)
class Answer:
    """The service's answer: an HTTP-like status and a JSON body (the new state, or the refusal)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body}
