"""The timeline of an alert: every step, append-only, who / when / what / note.

Raised, severity raised, notified (whom, by which channel, delivered or not), escalated,
acknowledged, dispatched, accepted, arrived, feedback, resolved (by the condition or by hand),
archived, shelved ... Nothing is overwritten: the store's `alert_events` table refuses UPDATE and
DELETE (migration 0002). Written by `AlertStore.record` and inside the store's own state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SYSTEM = "system"  # the actor of steps no person took


class Event(StrEnum):
    RAISED = "raised"
    SEVERITY_RAISED = "severity_raised"
    NOTIFIED = "notified"  # data: person, channel, delivered, error
    ESCALATED = "escalated"
    REMINDED = "reminded"  # still unacknowledged: everyone told so far told again (data: to)
    ACKNOWLEDGED = "acknowledged"
    NOTE = "note"
    DISPATCHED = "dispatched"  # data: team, assignee, deadline
    DISPATCH_CANCELLED = "dispatch_cancelled"  # data: dispatch_id (the operator took it back)
    ACCEPTED = "accepted"
    ARRIVED = "arrived"
    FEEDBACK = "feedback"  # data: cause, action, photos
    RESOLVED = "resolved"  # actor "system" = the condition cleared; else the person
    ARCHIVED = "archived"  # data: cause
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    DEVICE_SILENT = "device_silent"  # the device went quiet while in alarm: a fact, not a clear
    DEVICE_BACK = "device_back"
    FOLDED = "folded"  # folded under a place-level alert (data: parent alert_id)
    INHIBITED = "inhibited"  # muted while its cause is open (alerts/inhibit.py; data: cause, cause_rule, inhibit)
    UNINHIBITED = "uninhibited"  # its cause no longer open: back, published and notified (data: cause)
    # The store could not write (a full disk, the database away): the steps of this gap were kept in memory
    # (data: from, to); or lost in a failover and written again from the engine's memory (data: lost, at).
    WRITTEN_LATE = "written_late"
    REOPENED = "reopened"  # the condition held again within the watch after a close (data: value, tier)
    REFUSED = "close_refused"  # a hand close refused: the danger was still measured (data: value, at)
    QUIET = "quiet"  # not told: in their quiet hours, below red (data: people, event, tier)


EVENT_LABEL: dict[str, str] = {
    Event.RAISED: "告警产生",
    Event.SEVERITY_RAISED: "级别升高",
    Event.NOTIFIED: "已通知",
    Event.ESCALATED: "逐级上报",
    Event.REMINDED: "再次提醒",
    Event.ACKNOWLEDGED: "已确认",
    Event.NOTE: "备注",
    Event.DISPATCHED: "已派单",
    Event.DISPATCH_CANCELLED: "派单撤回",
    Event.ACCEPTED: "已接单",
    Event.ARRIVED: "已到场",
    Event.FEEDBACK: "现场反馈",
    Event.RESOLVED: "已解除",
    Event.ARCHIVED: "已归档",
    Event.SHELVED: "已搁置",
    Event.UNSHELVED: "搁置结束",
    Event.DEVICE_SILENT: "设备失联",
    Event.DEVICE_BACK: "设备恢复",
    Event.FOLDED: "已归并",
    Event.INHIBITED: "已抑制",
    Event.UNINHIBITED: "抑制结束",
    Event.WRITTEN_LATE: "事后补记",  # the cause (a full disk, an unreachable database) is in its note
    Event.REOPENED: "复燃/重新告警",
    Event.REFUSED: "解除被拒(仍在报警)",
    Event.QUIET: "免打扰时段, 未通知",
}


# How a notification went out, in the words staff use (the channel kinds of alerts/channels/).
CHANNEL_LABEL: dict[str, str] = {
    "wecom": "企业微信", "dingtalk": "钉钉", "email": "邮件", "sms": "短信/语音", "webhook": "对接系统",
    "mqtt": "消息总线", "outbox": "消息",
}


def notified_words(data: dict[str, Any]) -> str:
    """"张三 企业微信 已送达" / "李四 短信/语音 发送失败" / "派单消息 王五 已排队发送": a notification
    step in Chinese (the record keeps channel ids, error text and the outbox for the operators)."""
    who = data.get("person") or "、".join(str(x) for x in data.get("to") or ())
    how = CHANNEL_LABEL.get(str(data.get("kind") or data.get("channel") or ""), "消息")
    got = data.get("delivered")
    status = "已排队发送" if got == "queued" else "已送达" if got is True else "发送失败" if got is False else ""
    if data.get("dispatch_id"):
        how = "派单消息"
    return " ".join(x for x in (str(who), how, status) if x)


@dataclass(frozen=True, slots=True)
class Step:
    seq: int
    alert_id: str
    at: str
    event: str
    actor: str
    note: str | None
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "event": self.event, "label": EVENT_LABEL.get(self.event, self.event),
                "by": self.actor, "note": self.note, "data": self.data}

    def words(self) -> str:
        """What the step says beyond its label, in Chinese, for pages and the field phone."""
        if self.event == Event.NOTIFIED and self.data:
            return notified_words(self.data)
        if self.data.get("override"):  # closed over a live reading (alerts/guard.py): said, with the reading
            return f"【强制解除·当时读数 {self.data.get('value', self.data.get('live_value'))}】{self.note or ''}"
        if self.event == Event.REOPENED:
            return (f"第 {self.data.get('reopened', 1)} 次 · 读数 {self.data.get('value')} · "
                    f"升至第 {self.data.get('tier')} 级通知")
        if self.event == Event.ESCALATED and self.data.get("tier"):
            return f"第 {self.data['tier']} 级" + (f" {'、'.join(map(str, self.data['to']))}" if self.data.get("to")
                                                  else "")
        return self.note or ""
