"""ingest/fastmqtt.py overrides and reads private members of paho-mqtt's Client.

pyproject.toml pins paho-mqtt to the minor version this was tested on (2.2). If an upgrade
renames, removes or re-signs any of these members, this test fails by name, before the fast
client misbehaves at 30k msg/s. On such a failure: read paho's change to that member, adapt
FastClient, then update the expectations here and the pin.
"""

from __future__ import annotations

import inspect
import threading
from importlib.metadata import version

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.fastmqtt import FastClient, _BufferedSocket

# method -> parameters (name, default or None) after self, as in paho-mqtt 2.2
METHODS: dict[str, list[tuple[str, object]]] = {
    "_create_socket": [],
    "loop_read": [("max_packets", 1)],
    "_packet_read": [],
    "_loop_rc_handle": [("rc", None)],
    "_handle_publish": [],
    "_send_puback": [("mid", None)],
    "_packet_queue": [("command", None), ("packet", None), ("mid", None), ("qos", None), ("info", None)],
    "_sock_recv": [("bufsize", None)],
    "_loop": [("timeout", 1.0)],
}

# instance attribute -> type on a fresh MQTT 5 client with manual acks
ATTRIBUTES: dict[str, type | tuple[type, ...]] = {
    "_ssl": bool,
    "_transport": str,
    "_sock": type(None),
    "_in_packet": dict,
    "_protocol": int,
    "_userdata": type(None),
    "_manual_ack": bool,
    "suppress_exceptions": bool,
    "_in_callback_mutex": type(threading.Lock()),
}


def test_paho_is_the_pinned_minor_version() -> None:
    assert version("paho-mqtt").split(".")[:2] == ["2", "2"], "fastmqtt.py was tested on paho-mqtt 2.2 only"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_exists_with_its_signature(name: str) -> None:
    member = getattr(mqtt.Client, name, None)
    assert callable(member), f"paho Client.{name} is gone: ingest/fastmqtt.py depends on it"
    params = list(inspect.signature(member).parameters.values())
    assert params[0].name == "self"
    got = [(p.name, None if p.default is inspect.Parameter.empty else p.default) for p in params[1:]]
    assert got == METHODS[name], f"paho Client.{name} changed its signature"


def test_every_override_is_listed() -> None:
    """Each member FastClient defines over paho is one this test checks."""
    overrides = {n for n in vars(FastClient) if not n.startswith("__") and hasattr(mqtt.Client, n)}
    assert overrides and overrides <= set(METHODS), overrides - set(METHODS)


def test_instance_attributes() -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    for name, typ in ATTRIBUTES.items():
        assert hasattr(c, name), f"paho Client has no attribute {name} any more"
        assert isinstance(getattr(c, name), typ), f"paho Client.{name} is a {type(getattr(c, name))} now"
    assert c._transport == "tcp" and c._protocol == mqtt.MQTTv5 and c._manual_ack is True
    assert c._ssl is False
    # the packet being read: _handle_publish reads its command byte and body
    assert {"command", "packet"} <= set(c._in_packet) and isinstance(c._in_packet["packet"], bytearray)
    # per-topic callbacks live in a trie whose root's children the lean path checks
    assert c._on_message_filtered._root._children == {}
    c.message_callback_add("sc/x", lambda *_: None)
    assert c._on_message_filtered._root._children


def test_loop_relies_on_pending_and_sock_recv() -> None:
    """The buffered socket helps only while paho asks `pending()` before select and reads via `_sock.recv`."""
    assert "self._sock.pending()" in inspect.getsource(mqtt.Client._loop)
    assert "self._sock.recv(" in inspect.getsource(mqtt.Client._sock_recv)
    assert "self._sock_recv(1)" in inspect.getsource(mqtt.Client._packet_read)
    assert callable(_BufferedSocket.pending)
