"""The contract's MQTT topic as a channel: the alert's message on `sc/alerts/{community}/{alert_id}`
through the existing publisher (alerts/publisher.py), QoS 1, waiting for the broker's PUBACK.

The engine already publishes every state change on that topic as it happens; this channel is for a
second broker (e.g. the district's) that must get the same messages durably, from the outbox.
Options: none; `url` is the broker (mqtt://user:pass@host:port).
"""

from __future__ import annotations

import threading
from typing import Any

from alerts.channels.base import Channel, DeliveryError, Target
from alerts.message import Message
from alerts.roster import Person


class MqttChannel(Channel):
    kind = "mqtt"

    def __init__(self, target: Target, timeout_s: float = 5.0) -> None:
        super().__init__(target, timeout_s)
        if not target.url:
            raise ValueError(f"channel {target.id}: `url` (mqtt://host:port) is required")
        self._client: Any = None
        self._lock = threading.Lock()

    def _connected(self) -> Any:
        if self._client is None:
            from core.mqtt import connect, make_client
            from core.settings import load_settings

            s = load_settings({}, mqtt_url=self.target.url)
            client = make_client(s, client_id=f"sc-notify-{self.target.id}", persistent=False)
            try:
                connect(client, s, persistent=False, wait_s=self.timeout_s)
            except Exception as exc:
                raise DeliveryError(f"broker {self.target.url}: {exc}") from None
            self._client = client
        return self._client

    def send_alert(self, alert: dict[str, Any]) -> None:
        from alerts.publisher import publish_alert
        from core.contract import Alert

        with self._lock:
            info = publish_alert(self._connected(), Alert.from_json(alert))
            try:
                info.wait_for_publish(self.timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise DeliveryError(f"not published: {exc}") from None
            if not info.is_published():
                raise DeliveryError(f"no PUBACK within {self.timeout_s:g} s")

    def send(self, message: Message, people: list[Person], alert: dict[str, Any] | None = None) -> None:
        if alert is None:
            raise DeliveryError("nothing to publish: this notification carries no alert")
        self.send_alert(alert)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

# The channel kind this module adds (alerts/channels/config.py finds it here).
CHANNEL = MqttChannel
