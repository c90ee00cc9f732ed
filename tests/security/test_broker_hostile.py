"""Hostile clients against the real Mosquitto that `up` starts with SC_SECURE=1 (issue 12)."""

from __future__ import annotations

import socket
import ssl
import struct
import time

import paho.mqtt.client as mqtt

from core.accounts import MQTT_ALERTS, MQTT_DASHBOARD, MQTT_INGEST
from tests.security.conftest import Probe, SecureStack, device_probe, service_probe, telemetry, wait_until


def test_unauthenticated_and_wrong_password_refused(secure: SecureStack, probes: list[Probe]) -> None:
    dev = secure.devices("gas")[0]
    cred = secure.creds(dev.device_id)
    cases = [
        Probe(secure, None, None, tls=True),  # anonymous over TLS
        Probe(secure, None, None, tls=False),  # anonymous on the plain listener
        Probe(secure, cred["username"], "not-the-password", tls=True),
        Probe(secure, "G-no-such-device", cred["password"], tls=False),
    ]
    probes.extend(cases)
    assert all(p.answered.wait(10) for p in cases)
    for p in cases:
        assert p.refused() and not p.connected.is_set(), p.events
    # ... while the device's own credentials work on both listeners.
    ok = device_probe(secure, probes, dev)
    assert ok.connected.is_set()


def test_clients_verify_the_broker_certificate(secure: SecureStack, probes: list[Probe]) -> None:
    """Without the project's CA the TLS handshake fails: clients do not accept any certificate."""
    with socket.create_connection(("127.0.0.1", secure.settings.mqtt_tls_port), timeout=5) as raw:
        ctx = ssl.create_default_context()  # the system's CAs only
        try:
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            raise AssertionError("an unknown CA was accepted")
        except ssl.SSLCertVerificationError:
            pass
    from core.mqtt import tls_context

    with socket.create_connection(("127.0.0.1", secure.settings.mqtt_tls_port), timeout=5) as raw, \
            tls_context(secure.settings).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_device_cannot_publish_as_another_device(secure: SecureStack, probes: list[Probe]) -> None:
    a, b = secure.devices("gas", "lanshanjun")[:2]
    reader = service_probe(secure, probes, MQTT_INGEST, subscribe=["sc/#"])
    pa = device_probe(secure, probes, a)
    own = f"sc/{a.community}/gas/{a.device_id}/telemetry"
    forged = f"sc/{b.community}/gas/{b.device_id}/telemetry"
    wrong_kind = f"sc/{a.community}/water/{a.device_id}/telemetry"
    for topic in (forged, wrong_kind, own):
        pa.publish(topic, telemetry("lel_pct", 1.0)).wait_for_publish(5)
    assert wait_until(lambda: any(t == own for t, _, _ in reader.messages))
    time.sleep(0.5)
    topics = {t for t, _, _ in reader.messages}
    assert forged not in topics and wrong_kind not in topics


def test_subscribing_to_everything_receives_nothing(secure: SecureStack, probes: list[Probe]) -> None:
    """A device may read nothing: `#`, `sc/#` and `sc/alerts/#` deliver it nothing, retained or live.

    (Mosquitto 2.0.11's acl_file does not check subscriptions — its SUBACK grants them, to MQTT 3.1.1
    and 5 clients alike — and refuses at delivery, by the read ACL: that is what is tested here.)"""
    dev, other = secure.devices("power")[:2]
    alerts = service_probe(secure, probes, MQTT_ALERTS)
    alerts.publish("sc/alerts/yanhu/a-retained-probe", b'{"state":"active"}', retain=True).wait_for_publish(5)
    spy3 = device_probe(secure, probes, dev, subscribe=["#", "sc/#", "sc/alerts/#", "$SYS/#"])
    assert spy3.suback.wait(10)
    po = device_probe(secure, probes, other)
    po.publish(f"sc/{other.community}/power/{other.device_id}/telemetry", telemetry("temp_c", 20)).wait_for_publish(5)
    alerts.publish("sc/alerts/yanhu/a-live-probe", b'{"state":"active"}').wait_for_publish(5)
    control = service_probe(secure, probes, MQTT_INGEST, subscribe=["sc/#"])
    assert wait_until(lambda: any(t == "sc/alerts/yanhu/a-retained-probe" for t, _, _ in control.messages))
    time.sleep(1.0)
    assert spy3.messages == []
    alerts.publish("sc/alerts/yanhu/a-retained-probe", b"", retain=True).wait_for_publish(5)


def test_clearing_a_retained_alert_is_refused(secure: SecureStack, probes: list[Probe]) -> None:
    topic = "sc/alerts/lanshanjun/a-clear-probe"
    alerts = service_probe(secure, probes, MQTT_ALERTS)
    alerts.publish(topic, b'{"alert_id":"a-clear-probe","state":"active"}', retain=True).wait_for_publish(5)
    dev = secure.devices("gas", "lanshanjun")[3]
    attacker = device_probe(secure, probes, dev)
    attacker.publish(topic, b"", retain=True).wait_for_publish(5)  # the empty retained publish of the issue
    attacker.publish(topic, b'{"state":"resolved"}', retain=True).wait_for_publish(5)
    anon = Probe(secure, None, None, tls=False)
    probes.append(anon)
    assert anon.answered.wait(10) and anon.refused()
    time.sleep(0.5)
    reader = service_probe(secure, probes, MQTT_INGEST, subscribe=[topic])
    assert wait_until(lambda: reader.messages)
    assert reader.messages[-1] == (topic, b'{"alert_id":"a-clear-probe","state":"active"}', True)
    # Nor may the dashboard: staff actions are commands to the alert service, the one publisher here
    # (a compromised dashboard cannot forge or clear an alarm). Only svc.alerts clears it.
    dash = service_probe(secure, probes, MQTT_DASHBOARD)
    dash.publish(topic, b'{"alert_id":"a-clear-probe","state":"resolved"}', retain=True).wait_for_publish(5)
    dash.publish(topic, b"", retain=True).wait_for_publish(5)
    time.sleep(0.5)
    late = service_probe(secure, probes, MQTT_INGEST, subscribe=[topic])
    assert wait_until(lambda: late.messages)
    assert late.messages[-1] == (topic, b'{"alert_id":"a-clear-probe","state":"active"}', True)
    alerts.publish(topic, b"", retain=True).wait_for_publish(5)
    time.sleep(0.5)
    gone = service_probe(secure, probes, MQTT_INGEST, subscribe=[topic])
    time.sleep(1.0)
    assert gone.messages == []


def test_oversized_packet_disconnects_only_its_sender(secure: SecureStack, probes: list[Probe]) -> None:
    big_dev, good_dev = secure.devices("water")[:2]
    reader = service_probe(secure, probes, MQTT_INGEST, subscribe=["sc/+/water/#"])
    big = device_probe(secure, probes, big_dev)
    good = device_probe(secure, probes, good_dev)
    big_topic = f"sc/{big_dev.community}/water/{big_dev.device_id}/telemetry"
    big.publish(big_topic, b"x" * (secure.settings.mqtt_max_packet_bytes + 1024), qos=0)
    assert wait_until(lambda: big.disconnects() >= 1), big.events
    good_topic = f"sc/{good_dev.community}/water/{good_dev.device_id}/telemetry"
    good.publish(good_topic, telemetry("leak", False)).wait_for_publish(5)
    assert wait_until(lambda: any(t == good_topic for t, _, _ in reader.messages))
    assert not any(len(p) > secure.settings.mqtt_max_packet_bytes for _, p, _ in reader.messages)
    assert good.disconnects() == 0


def _connect_packet(client_id: str) -> bytes:
    body = struct.pack("!H", 4) + b"MQTT" + bytes([4, 0x02]) + struct.pack("!H", 30)
    body += struct.pack("!H", len(client_id)) + client_id.encode()
    return b"\x10" + bytes([len(body)]) + body


def test_thousand_connections_while_a_real_device_is_served(secure: SecureStack, probes: list[Probe]) -> None:
    """1,000 connections at once (half anonymous CONNECTs, half idle sockets): refused or left
    idle, while a provisioned device keeps publishing and every message arrives."""
    dev = secure.devices("camera")[0]
    reader = service_probe(secure, probes, MQTT_INGEST, subscribe=["sc/+/camera/#"])
    device = device_probe(secure, probes, dev)
    topic = f"sc/{dev.community}/camera/{dev.device_id}/telemetry"
    socks: list[socket.socket] = []
    sent = 0
    refused = 0
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", secure.settings.mqtt.port), timeout=5)
            socks.append(s)
            if i % 2 == 0:
                s.sendall(_connect_packet(f"flood-{i}"))
            if i % 50 == 0:
                device.publish(topic, telemetry("fps", 25.0)).wait_for_publish(5)
                sent += 1
        for i, s in enumerate(socks):
            if i % 2 == 0:
                s.settimeout(5)
                ack = s.recv(4)
                if len(ack) == 4 and ack[0] == 0x20 and ack[3] != 0:
                    refused += 1
        for _ in range(10):
            device.publish(topic, telemetry("fps", 25.0)).wait_for_publish(5)
            sent += 1
        assert wait_until(lambda: sum(1 for t, _, _ in reader.messages if t == topic) >= sent, timeout=15)
    finally:
        for s in socks:
            s.close()
    assert refused == 500
    assert secure.broker.alive() and device.disconnects() == 0


def test_session_takeover_by_client_id_is_impossible(secure: SecureStack, probes: list[Probe]) -> None:
    """A device connecting with ingest's client id does not knock ingest off nor wipe its session:
    the secure broker uses each account's name as its client id."""
    reader = service_probe(secure, probes, MQTT_INGEST, subscribe=["sc/#"])
    dev = secure.devices("gas", "yanling")[0]
    cred = secure.creds(dev.device_id)
    thief = Probe(secure, cred["username"], cred["password"], client_id=MQTT_INGEST, protocol=mqtt.MQTTv5)
    probes.append(thief)
    assert thief.wait_connected()
    time.sleep(1.0)
    assert reader.disconnects() == 0
    thief.publish(f"sc/yanling/gas/{dev.device_id}/telemetry", telemetry("lel_pct", 2.0)).wait_for_publish(5)
    assert wait_until(lambda: any(dev.device_id in t for t, _, _ in reader.messages))


def test_forged_publish_gets_not_authorized_under_mqtt5(secure: SecureStack, probes: list[Probe]) -> None:
    a, b = secure.devices("gas", "yanhu")[:2]
    p = device_probe(secure, probes, a, protocol=mqtt.MQTTv5)
    acks: list[tuple[int, object]] = []
    p.c.on_publish = lambda c, u, mid, rc, props=None: acks.append((mid, rc))
    forged = p.publish(f"sc/{b.community}/gas/{b.device_id}/telemetry", telemetry("lel_pct", 90.0))
    clear = p.publish("sc/alerts/yanhu/a-x", b"", retain=True)
    own = p.publish(f"sc/{a.community}/gas/{a.device_id}/telemetry", telemetry("lel_pct", 1.0))
    assert wait_until(lambda: len(acks) == 3)
    got = dict(acks)
    assert str(got[forged.mid]) == "Not authorized" and str(got[clear.mid]) == "Not authorized"
    assert not got[own.mid].is_failure  # type: ignore[attr-defined]  # Success / No matching subscribers


def test_only_ingest_hands_records_to_the_engine(secure: SecureStack, probes: list[Probe]) -> None:
    """The accepted-records topic skips validation on the engine's side: a device (or the engine) that
    could write there could raise alerts. Only the ingest accounts may; the alert accounts read it."""
    from ingest.forward import records_topic

    topic = records_topic("yanhu")
    dev = secure.devices("gas", "yanhu")[0]
    reader = service_probe(secure, probes, "svc.alerts-yanhu", subscribe=[topic])
    forged = b'[[0,"%s",%d,null,{"lel_pct":90.0}]]' % (dev.device_id.encode(), int(time.time() * 1000))
    device_probe(secure, probes, dev).publish(topic, forged).wait_for_publish(5)
    service_probe(secure, probes, MQTT_ALERTS).publish(topic, forged).wait_for_publish(5)
    ingest = service_probe(secure, probes, MQTT_INGEST)
    ingest.publish(topic, b"[]").wait_for_publish(5)  # the control: the one that may
    assert wait_until(lambda: (topic, b"[]", False) in reader.messages)
    time.sleep(0.5)
    assert [m for m in reader.messages if m[1] == forged] == []
