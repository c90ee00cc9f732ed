"""A paho-mqtt 2.x client tuned for a subscriber that receives tens of thousands of messages a second.

Two costs dominate stock paho at that rate, both syscalls rather than Python work:
- reading: paho does 3 `recv()` calls per packet (type byte, length byte(s), body) and one
  `select()` per packet. `_BufferedSocket` reads 256 KiB at a time and reports `pending()`, which
  paho's loop already honours (it skips the select wait while bytes are pending), and `loop_read`
  parses every complete packet available instead of one.
- acknowledging: `ack()` queues one PUBACK and writes one wake-up byte per message. `ack_many()`
  queues all PUBACKs of a batch as one write.
Profiling (py-spy) then showed paho's PUBLISH decoding, mostly building an MQTT 5 `Properties`
object per message even when it carries none, at ~25 % of the network thread: `_handle_publish`
takes a lean path for the common case (MQTT 5, QoS 0/1, no properties, no per-topic callbacks)
and defers to paho for anything else.

Only plain TCP sockets are wrapped; TLS and websockets keep stock behaviour (correct, just slower).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
_MAX_PACKETS_PER_READ = 2000  # then let the loop send acks/pings before reading on
_PUBACK = 0x40


_NO_PROPERTIES = Properties(PacketTypes.PUBLISH)  # shared, read-only: PUBLISHes without properties


class _Message:
    """What on_message reads of an MQTTMessage, without its per-message Condition (MQTTMessageInfo)."""

    __slots__ = ("_topic", "dup", "mid", "payload", "properties", "qos", "retain", "timestamp")

    def __init__(self, mid: int, topic: bytes, payload: bytes, qos: int, dup: bool, retain: bool) -> None:
        self.mid, self._topic, self.payload, self.qos, self.dup, self.retain = mid, topic, payload, qos, dup, retain
        self.properties = _NO_PROPERTIES
        self.timestamp = time.monotonic()

    @property
    def topic(self) -> str:
        return self._topic.decode("utf-8")  # raises UnicodeDecodeError like MQTTMessage.topic


class _BufferedSocket:
    """A non-blocking socket whose `recv` is served from a large read buffer."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(n, _READ_CHUNK))  # raises BlockingIOError when empty
            if len(data) <= n:
                self._buf, self._pos = b"", 0
                return data
            self._buf, self._pos = data, 0
        end = self._pos + n
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:  # send, close, setblocking, ...
        return getattr(self._sock, name)


class FastClient(mqtt.Client):
    """paho's Client with buffered reads and batched PUBACKs (see the module docstring)."""

    def _create_socket(self):  # type: ignore[no-untyped-def]
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl and self._transport == "tcp":
            return _BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        for _ in range(_MAX_PACKETS_PER_READ):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        pkt = self._in_packet
        cmd = pkt["command"]
        qos = (cmd & 0x06) >> 1
        data = pkt["packet"]
        if self._protocol != mqtt.MQTTv5 or qos > 1 or self._on_message_filtered._root._children:
            return super()._handle_publish()
        tlen = (data[0] << 8) | data[1]
        pos = 2 + tlen
        mid = 0
        if qos:
            mid = (data[pos] << 8) | data[pos + 1]
            pos += 2
        if len(data) <= pos or data[pos] != 0:  # has properties (or malformed): paho's full decoder
            return super()._handle_publish()
        msg = _Message(mid, bytes(data[2 : 2 + tlen]), bytes(data[pos + 1 :]), qos,
                       bool(cmd & 0x08), bool(cmd & 0x01))
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, msg)
                except Exception:
                    log.exception("on_message failed (message left unacknowledged)")
                    if not self.suppress_exceptions:
                        raise
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK every mid (QoS 1, manual ack) with one queued write."""
        packet = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)


def make_fast(client: mqtt.Client) -> FastClient:
    """Turn a client from `core.mqtt.make_client` into a FastClient (same state, more speed).

    Swapping the class keeps the one place that builds clients from settings (URL, TLS, credentials).
    """
    client.__class__ = FastClient
    return client  # type: ignore[return-value]
