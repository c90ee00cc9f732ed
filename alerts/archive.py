"""Archive (归档): every red and orange alert, including one whose condition cleared by itself, is
closed out by a person with a cause category (the categories of `alerts.dispatch.CAUSES`).

An alert is archived once, after it is resolved and none of its dispatches is still open (fed back
or taken back), and not while its device is still in alarm (alerts/guard.py: 409 with the live
reading, unless overridden with a reason); the archive row and the `archived` timeline step are
written in one transaction.
`pending` lists what is still to archive, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alerts.dispatch import CAUSES, MAX_TEXT, OPEN_STATES, STATE_LABEL, Refused
from alerts.guard import Policy, check_override, device_danger, override_data
from alerts.store import Store
from core.contract import Alert
from core.settings import Settings
from core.severity import Severity

MUST_ARCHIVE: tuple[str, ...] = (Severity.RED.value, Severity.ORANGE.value)


@dataclass(frozen=True, slots=True)
class Archived:
    alert_id: str
    archived_at: str
    archived_by: str
    cause: str
    note: str | None

    def as_json(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "archived_at": self.archived_at, "archived_by": self.archived_by,
                "cause": self.cause, "note": self.note}


def archive(store: Store, alert_id: str, by: str, cause: str, note: str | None, now: str, *,
            policy: Policy | None = None, override: bool = False) -> Archived:
    """Close out a resolved alert; Refused (400 bad input, 404 unknown, 409 open or already archived,
    or its device still in alarm: the live reading in `body`, unless `override` with a reason in `note`)."""
    by = (by or "").strip()
    if not by:
        raise Refused(400, '请填写归档人 ("by", who archives)')
    if cause not in CAUSES:
        raise Refused(400, f"请选择原因分类（cause）：{'、'.join(CAUSES)}")
    if note is not None and len(note) > MAX_TEXT:
        raise Refused(400, f"note is longer than {MAX_TEXT} characters")
    extra: dict[str, Any] = {}
    cur = store.get(alert_id)
    if cur is not None and cur.state == "resolved":
        live = device_danger(store, cur, policy or Policy(Settings.alert_holdoff_s, Settings.alerts_watch_s))
        refused = check_override(live, override, note, cur)
        if refused is not None:
            raise Refused(refused.status, refused.error or "refused", refused.body())
        extra = override_data(live, note, override)

    def check(state: str | None, busy: list[tuple[str, str]], archived_by: str | None) -> None:
        """In the archive's transaction: nothing is written if this refuses."""
        if state is None:
            raise Refused(404, f"未找到该告警 {alert_id}")
        if state != "resolved":
            raise Refused(409, "告警尚未解除，请先解除再归档")
        if busy:
            who = "、".join(f"{team}（{STATE_LABEL.get(st, st)}）" for team, st in busy)
            raise Refused(409, f"尚有未完成的派单：{who}。请等待现场反馈或撤回派单后再归档")
        if archived_by is not None:
            raise Refused(409, f"该告警已由 {archived_by} 归档")

    store.archive_insert(alert_id, now, by, cause, note or None, {"cause": cause, **extra}, OPEN_STATES, check)
    return Archived(alert_id, now, by, cause, note or None)


def archived(store: Store, alert_id: str) -> Archived | None:
    r = store.archived(alert_id)
    return Archived(r["alert_id"], r["archived_at"], r["archived_by"], r["cause"], r["note"]) if r else None


def pending(store: Store, community: str | None = None, limit: int = 1000) -> list[Alert]:
    """Resolved red/orange alerts nobody has archived yet, oldest first."""
    return store.pending_archive(MUST_ARCHIVE, community, limit)
