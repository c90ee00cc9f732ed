"""Publish a Fleet's messages in real (or warped) time over a few shared MQTT connections.

Shared connections: thousands of devices over a handful of TCP connections costs almost nothing,
but a shared connection cannot carry one last will per device. So each device's retained
`online` status is published at start, and an incident's network cut *emulates* the will by
publishing `{"state": "offline"}` (no ts, like a real will) on the device's status topic.
`per_device=True` (small fleets) gives each device its own client with a real last will.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from core.contract import device_topic
from core.mqtt import connect, make_client
from core.settings import Settings
from simulators.fleet import Fleet, Message, status_payload

log = logging.getLogger(__name__)

MAX_PER_DEVICE = 500  # one client (and one paho thread) per device beyond this is not sensible


@dataclass(slots=True)
class RunStats:
    published: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    sim_s: float = 0.0
    errors: int = 0

    def count(self, msg: Message) -> None:
        self.published += 1
        self.by_type[msg.kind] = self.by_type.get(msg.kind, 0) + 1


class Sink:
    """Where messages go: a few shared clients, or one client per device."""

    def __init__(self, settings: Settings, fleet: Fleet, connections: int = 2, qos: int = 0,
                 per_device: bool = False, max_inflight: int = 1000) -> None:
        self.qos = qos
        run = uuid.uuid4().hex[:6]
        if settings.secure and settings.mqtt_account:
            # The secure broker lets an account hold one connection: the fleet's account gets one.
            if per_device:
                raise ValueError("--per-device-connections needs each device's own credentials; with "
                                 "SC_SECURE the simulator publishes as the fleet over one connection")
            connections = 1
        self.clients: list[mqtt.Client] = []
        self.route: dict[str, mqtt.Client] = {}
        if per_device:
            if len(fleet.devices) > MAX_PER_DEVICE:
                raise ValueError(f"--per-device-connections is for at most {MAX_PER_DEVICE} devices")
            for d in fleet.devices:
                c = make_client(settings, client_id=f"{d.device_id}-{run}", protocol=mqtt.MQTTv311)
                # A real last will: the broker publishes it when this device's connection dies.
                c.will_set(device_topic(d.community, d.kind, d.device_id, "status"),
                           status_payload(None, "offline"), qos=1, retain=True)
                self.clients.append(c)
                self.route[d.device_id] = c
        else:
            n = max(1, min(connections, len(fleet.devices) or 1))
            self.clients = [make_client(settings, client_id=f"sc-sim-{run}-{i}", protocol=mqtt.MQTTv311)
                            for i in range(n)]
            for j, d in enumerate(fleet.devices):
                self.route[d.device_id] = self.clients[j % n]
        for c in self.clients:
            c.max_inflight_messages_set(max_inflight)
            connect(c, settings)

    def publish(self, msg: Message) -> bool:
        client = self.route.get(msg.device_id) or self.clients[0]
        qos = 1 if msg.retain else max(msg.qos, self.qos)
        info = client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_raw(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.clients[0].publish(topic, payload, qos=qos)

    def close(self, drain_s: float = 5.0) -> None:
        """Flush what is queued, then disconnect cleanly (a clean disconnect sends no will)."""
        deadline = time.monotonic() + drain_s
        for c in self.clients:
            while c.want_write() and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(0.1)
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


def run(
    fleet: Fleet,
    sink: Sink,
    *,
    speed: float = 1.0,
    duration_s: float | None = None,
    tick_s: float = 0.2,
    stop: threading.Event | None = None,
    extra: Callable[[Sequence[Message]], Sequence[Message]] | None = None,
    offline_on_exit: bool = False,
) -> RunStats:
    """Publish until `duration_s` simulated seconds have passed (or `stop` is set).

    Simulated time = start + speed × wall time elapsed. `extra` may add messages per batch
    (the garbage generator). One wake-up per tick publishes the whole batch.
    """
    stop = stop or threading.Event()
    stats = RunStats()
    for msg in fleet.initial():
        if sink.publish(msg):
            stats.count(msg)
    m0 = time.monotonic()
    end_ms = fleet.start_ms + int(duration_s * 1000) if duration_s is not None else None
    while not stop.is_set():
        now_ms = fleet.start_ms + int((time.monotonic() - m0) * speed * 1000)
        if end_ms is not None:
            now_ms = min(now_ms, end_ms)
        batch = fleet.due(now_ms)
        if extra is not None:
            batch = [*batch, *extra(batch)]
        for msg in batch:
            if sink.publish(msg):
                stats.count(msg)
            else:
                stats.errors += 1
        if end_ms is not None and now_ms >= end_ms:
            break
        stop.wait(tick_s)
    if offline_on_exit:
        for d in fleet.devices:
            sink.publish(Message(0, device_topic(d.community, d.kind, d.device_id, "status"),
                                 status_payload(None, "offline"), True, 1, d.device_id, "status"))
    stats.wall_s = time.monotonic() - m0
    stats.sim_s = stats.wall_s * speed if end_ms is None else min(stats.wall_s * speed, duration_s or 0)
    return stats
