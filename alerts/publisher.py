"""Publishing alert state changes on `sc/alerts/{community}/{alert_id}` (contract §4).

QoS 1; retained while the alert is unresolved; on resolution the final message goes out
unretained and an empty retained message clears the broker's copy.
"""

from __future__ import annotations

import orjson
import paho.mqtt.client as mqtt

from core.contract import Alert, AlertState, alert_topic


def publish_alert(client: mqtt.Client, alert: Alert) -> mqtt.MQTTMessageInfo:
    topic = alert_topic(alert.community, alert.alert_id)
    payload = orjson.dumps(alert.as_json())
    if alert.state == AlertState.RESOLVED:
        info = client.publish(topic, payload, qos=1, retain=False)
        client.publish(topic, b"", qos=1, retain=True)
        return info
    return client.publish(topic, payload, qos=1, retain=True)
