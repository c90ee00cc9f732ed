"""A generic JSON webhook: the whole notification (message, alert, recipients) as one JSON POST.

Success is a 2xx answer; a body is not required, but a JSON body that reports an error
(`errcode`/`code` not 0, or `ok: false`) is a failure.
"""

from __future__ import annotations

from typing import Any

from alerts.channels.base import DeliveryError, HttpChannel
from alerts.message import Message
from alerts.roster import Person


def _json_error(r: Any) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in ("errcode", "code"):
        if key in body and body[key] not in (0, "0", 200, "ok", "OK"):
            return f"{key} {body[key]}: {body.get('errmsg') or body.get('message') or body.get('msg') or ''}"
    if body.get("ok") is False:
        return f"ok: false {body.get('error') or ''}"
    return None


class WebhookChannel(HttpChannel):
    kind = "webhook"
    max_bytes = 64000

    def body(self, message: Message, people: list[Person], alert: dict[str, Any] | None) -> dict[str, Any]:
        return {"title": message.title, "place": message.place, "text": message.plain(), "link": message.link,
                "severity": message.severity, "alert_id": message.alert_id,
                "to": [p.as_json() for p in self.addressees(people)], "message": message.as_json(), "alert": alert}

    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> None:
        r = self.post(self.body(message, people, alert))
        err = _json_error(r)
        if err:
            raise DeliveryError(f"webhook answered {err}")

# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = WebhookChannel
