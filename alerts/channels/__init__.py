"""Notification channels: one module per channel, each a subclass of `base.Channel`.

mqtt (the contract's alert topic), webhook (generic JSON), wecom (企业微信群机器人), dingtalk
(钉钉自定义机器人), email (SMTP), sms (the SMS/voice gateway webhook). Targets are configured in the
channels file (config.py); delivery from the outbox is alerts/delivery.py.

For other parts (the dispatch of issue 10) there are two calls:

- `send_to_person(settings, person, text, link, ...)`: durable. Appends the message to the outbox
  and returns its id; the running alert service delivers it through every configured channel that
  reaches the person (robot @-mention by mobile, e-mail, SMS gateway), with retries, rate limits
  and a `notified` step in the alert's timeline for each delivery.
- `deliver_now(settings, person, text, link, ...)`: immediate, in this process, once, through the
  same channels; returns {target id: None if delivered else the error text}. No retry, no record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerts.channels.base import Channel, DeliveryError, Target
from alerts.message import Message
from alerts.roster import Person

__all__ = ["Channel", "DeliveryError", "Person", "Target", "deliver_now", "load_targets", "queue_message",
           "send_to_person"]


def load_targets(settings: Any) -> list[Target]:
    """The configured targets: the channels file, else the SMS gateway of SC_ALERTS_WEBHOOK_URL."""
    from alerts.channels.config import default_targets, parse_channels

    if settings.alerts_channels_file:
        return parse_channels(Path(settings.alerts_channels_file))
    return default_targets(settings.alerts_webhook_url)


def _person(person: Person | dict[str, Any] | str) -> Person:
    if isinstance(person, Person):
        return person
    if isinstance(person, dict):
        return Person.from_json(person)
    text = str(person).strip()  # a bare address: an e-mail, else a mobile for every channel
    if "@" in text:
        return Person(name=text, email=text)
    return Person(name=text, phone=text, wecom=text, dingtalk=text)


def _message(text: str, link: str | None, title: str | None, alert_id: str | None, severity: str | None,
             place: str) -> Message:
    lines = [x for x in text.splitlines() if x.strip()] or [text]
    return Message(title=title or "【派单】请处置", place=place, lines=lines, link=link, severity=severity,
                   alert_id=alert_id)


def send_to_person(settings: Any, person: Person | dict[str, Any] | str, text: str, link: str | None = None, *,
                   title: str | None = None, alert_id: str | None = None, community: str | None = None,
                   severity: str | None = None, place: str = "", event: str = "dispatch") -> str:
    """Queue a message to one person (a roster Person, its JSON, or a bare mobile / e-mail address)
    for durable delivery by the alert service; returns the notification id."""
    return queue_message(settings, [person], text, link, title=title, alert_id=alert_id, community=community,
                         severity=severity, place=place, event=event)


def queue_message(settings: Any, people: list[Person | dict[str, Any] | str], text: str, link: str | None = None,
                  *, title: str | None = None, alert_id: str | None = None, community: str | None = None,
                  severity: str | None = None, place: str = "", event: str = "dispatch",
                  extra: dict[str, Any] | None = None) -> str:
    """The same for several people in one outbox entry (`extra` fields are kept on it, e.g. a dispatch id)."""
    from alerts.delivery import outbox_for

    msg = _message(text, link, title, alert_id, severity, place)
    entry = outbox_for(settings).append({
        **(extra or {}), "event": event, "tier": 1, "to": [_person(p).as_json() for p in people],
        "alert_id": alert_id, "severity": severity, "community": community, "text": msg.plain(),
        "link": link, "message": msg.as_json(), "alert": None})
    return str(entry["id"])


def deliver_now(settings: Any, person: Person | dict[str, Any] | str, text: str, link: str | None = None, *,
                title: str | None = None, alert_id: str | None = None, community: str | None = None,
                severity: str | None = None, place: str = "", event: str = "dispatch",
                targets: list[Target] | None = None) -> dict[str, str | None]:
    """Send once, now, through every configured channel that reaches the person."""
    from alerts.channels.config import make_channel

    p = _person(person)
    msg = _message(text, link, title, alert_id, severity, place)
    out: dict[str, str | None] = {}
    for t in targets if targets is not None else load_targets(settings):
        ch = make_channel(t, settings.notify_timeout_s)
        try:
            if not ch.wants(event, community, severity, [p]):
                continue
            ch.send(msg, [p])
            out[t.id] = None
        except DeliveryError as exc:
            out[t.id] = exc.text
        finally:
            ch.close()
    return out
