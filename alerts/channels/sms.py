"""The SMS / voice gateway webhook (what `SC_ALERTS_WEBHOOK_URL` has always been): one JSON POST
per notification naming the people to call or text by phone, with the plain text to read out.
"""

from __future__ import annotations

from typing import Any

from alerts.channels.base import cut
from alerts.channels.webhook import WebhookChannel
from alerts.message import Message
from alerts.roster import Person

SMS_MAX_BYTES = 1000  # long SMS are split by the gateway; past this, the link says the rest


class SmsGatewayChannel(WebhookChannel):
    kind = "sms"
    address_field = "phone"
    needs_address = True

    def body(self, message: Message, people: list[Person], alert: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"to": [{"name": p.name, "phone": p.phone} for p in self.addressees(people)],
                                "text": cut(message.plain(), SMS_MAX_BYTES), "alert_id": message.alert_id,
                                "severity": message.severity, "link": message.link}
        for k in ("state", "community", "compound_id"):  # as the gateway has always had them
            if alert and k in alert:
                body[k] = alert[k]
        return body

# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = SmsGatewayChannel
