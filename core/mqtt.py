"""paho-mqtt 2.x clients built from `SC_MQTT_URL` (mqtt:// or mqtts://, credentials in the URL).

Under `SC_SECURE` the clients use TLS (see `Settings.mqtt_endpoint`) and verify the broker's
certificate against the project's CA (`SC_MQTT_CA_FILE`, default `<SC_DATA_DIR>/pki/ca.pem`);
credentials come from the URL, else from the account `SC_MQTT_ACCOUNT` (its 0600 secret file).
With `SC_MQTT_STANDBY_URLS`, a connection attempt that fails sends the next one to the next broker
in turn (`follow_standbys`), with the same credentials.
"""

from __future__ import annotations

import logging
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.secrets import read_secret
from core.settings import Settings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


def make_client(
    settings: Settings,
    client_id: str | None = None,
    persistent: bool = False,
    manual_ack: bool = False,
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
    account: str | None = None,
) -> mqtt.Client:
    """A client not yet connected. `persistent`: fixed id, clean start off, long session expiry.
    `account`: a second broker account of this process (a secure broker allows one connection per account)."""
    url = settings.mqtt_endpoint
    cid = client_id or f"sc-{uuid.uuid4().hex[:12]}"
    kwargs: dict[str, object] = {}
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol,
        manual_ack=manual_ack, reconnect_on_failure=True, **kwargs,  # type: ignore[arg-type]
    )
    user, password = credentials(settings, account)
    if user:
        client.username_pw_set(user, password)
    if url.tls:
        client.tls_set_context(tls_context(settings))
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_queued_messages_set(0)
    return client


def credentials(settings: Settings, account: str | None = None) -> tuple[str | None, str | None]:
    """(user, password): from the URL, else from the account's secret (`account` or SC_MQTT_ACCOUNT)."""
    url = settings.mqtt
    if url.username and account is None:
        return url.username, url.password
    acct = account or settings.mqtt_account
    if acct:
        return acct, read_secret(settings, "mqtt", acct)
    return None, None


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker: the project's CA when it exists, else the system's; hostname checked."""
    ctx = ssl.create_default_context(cafile=str(settings.ca_path) if settings.ca_path.exists() else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def follow_standbys(client: mqtt.Client, settings: Settings) -> None:
    """Each failed connection attempt moves the client on to the next of SC_MQTT_URL's broker and the
    standbys, in order and round again; a connection that works is kept until it is lost and a
    reconnect to the same broker fails (a client on a standby stays there while it answers)."""
    endpoints = settings.mqtt_endpoints
    if len(endpoints) < 2:
        return
    prev = client.on_connect_fail

    def _next(c: mqtt.Client, userdata: object) -> None:
        here = next((i for i, e in enumerate(endpoints) if (e.host, e.port) == (c.host, c.port)), -1)
        nxt = endpoints[(here + 1) % len(endpoints)]
        log.warning("MQTT broker %s:%d did not answer; trying %s:%d", c.host, c.port, nxt.host, nxt.port)
        # paho's `host`/`port` setters refuse while a reconnect is under way (as here, between two
        # attempts); the next attempt reads these.
        c._host, c._port = nxt.host, nxt.port
        if prev is not None:
            prev(c, userdata)

    client.on_connect_fail = _next


def connect_properties(persistent: bool, receive_maximum: int = 65535) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    props.ReceiveMaximum = receive_maximum
    return props


def connect(
    client: mqtt.Client,
    settings: Settings,
    persistent: bool = False,
    receive_maximum: int = 65535,
    wait_s: float | None = 10.0,
) -> None:
    """Connect asynchronously (the loop retries with backoff); wait up to `wait_s` for CONNACK."""
    url = settings.mqtt_endpoint
    connected = threading.Event()
    prev = client.on_connect

    def _on_connect(c, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        if not rc.is_failure:
            connected.set()
        if prev is not None:
            prev(c, userdata, flags, rc, props)

    client.on_connect = _on_connect
    follow_standbys(client, settings)
    if client.protocol == mqtt.MQTTv5:
        client.connect_async(
            url.host, url.port, keepalive=settings.mqtt_keepalive_s,
            clean_start=not persistent, properties=connect_properties(persistent, receive_maximum),
        )
    else:
        client.connect_async(url.host, url.port, keepalive=settings.mqtt_keepalive_s)
    client.loop_start()
    if wait_s and not connected.wait(wait_s):
        log.warning("MQTT broker %s:%d not reachable yet; retrying in the background", url.host, url.port)
