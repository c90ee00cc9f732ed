"""A secure edge broker (smartcommunity/edge.py under SC_SECURE): devices use their own accounts on
it over TLS, and its bridge reaches the secure center over TLS as svc.edge-{community}; with a wrong
password the center refuses the bridge and nothing crosses."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.accounts import MQTT_DASHBOARD_LIVE, MQTT_INGEST, edge_account
from smartcommunity.edge import EdgeSpec, edge_state_topic, run_edge, write_edge
from smartcommunity.services import RunningService, free_port
from tests.security.conftest import Probe, SecureStack, service_probe, telemetry, wait_until

COMMUNITY = "yanling"


def _edge(secure: SecureStack, tmp_path: Path, password: str | None = None) -> tuple[EdgeSpec, RunningService]:
    s = secure.settings
    spec = EdgeSpec(COMMUNITY, [("127.0.0.1", s.mqtt_tls_port)], port=free_port(), tls_port=free_port())
    conf = write_edge(s, spec, tmp_path / "edge")
    if password is not None:
        conf.write_text(re.sub(r"(?m)^remote_password .*$", f"remote_password {password}", conf.read_text()))
    return spec, run_edge(s, spec, conf)


@pytest.fixture
def edges() -> Iterator[list[RunningService]]:
    made: list[RunningService] = []
    yield made
    for e in made:
        e.stop()


def _device_on_edge(secure: SecureStack, probes: list[Probe], spec: EdgeSpec) -> tuple[Probe, str]:
    dev = secure.devices("gas", COMMUNITY)[0]
    cred = secure.creds(dev.device_id)
    at_edge = replace(secure, settings=replace(secure.settings, mqtt_tls_port=spec.tls_port))
    p = Probe(at_edge, cred["username"], cred["password"], client_id=cred["client_id"])
    probes.append(p)
    assert p.wait_connected(), f"device refused by its edge: {p.events}"
    return p, f"sc/{COMMUNITY}/gas/{dev.device_id}/telemetry"


def test_bridge_authenticates_with_its_account_over_tls(secure: SecureStack, probes: list[Probe], tmp_path: Path,
                                                        edges: list[RunningService]) -> None:
    spec, edge = _edge(secure, tmp_path)
    edges.append(edge)
    conf = (tmp_path / "edge" / "mosquitto.conf").read_text()
    assert f"remote_username {edge_account(COMMUNITY)}" in conf and "bridge_cafile" in conf
    assert (tmp_path / "edge" / "mosquitto.conf").stat().st_mode & 0o077 == 0  # it holds the bridge's password
    live = service_probe(secure, probes, MQTT_DASHBOARD_LIVE, subscribe=[edge_state_topic(COMMUNITY)])
    assert wait_until(lambda: any(p == b"1" for _, p, _ in live.messages), 20), f"bridge not up: {live.messages}"
    center = service_probe(secure, probes, MQTT_INGEST, subscribe=[f"sc/{COMMUNITY}/#"])
    device, topic = _device_on_edge(secure, probes, spec)
    device.publish(topic, telemetry("lel_pct", 2.5)).wait_for_publish(10)
    assert wait_until(lambda: any(t == topic for t, _, _ in center.messages), 10), "nothing crossed the bridge"
    # The edge holds its devices to their own topics, as the center does.
    other = secure.devices("gas", COMMUNITY)[1].device_id
    device.publish(f"sc/{COMMUNITY}/gas/{other}/telemetry", telemetry("lel_pct", 90.0)).wait_for_publish(10)
    device.publish(topic, telemetry("lel_pct", 3.5)).wait_for_publish(10)
    assert wait_until(lambda: sum(t == topic for t, _, _ in center.messages) >= 2, 10)
    assert not any(other in t for t, _, _ in center.messages)


def test_bridge_with_a_wrong_password_never_connects(secure: SecureStack, probes: list[Probe], tmp_path: Path,
                                                     edges: list[RunningService]) -> None:
    spec, edge = _edge(secure, tmp_path, password="not-the-password")
    edges.append(edge)
    center = service_probe(secure, probes, MQTT_INGEST, subscribe=[f"sc/{COMMUNITY}/#"])
    device, topic = _device_on_edge(secure, probes, spec)
    device.publish(topic, json.dumps({"ts": int(time.time() * 1000), "m": {"lel_pct": 2.0}}).encode()
                   ).wait_for_publish(10)
    log = tmp_path / "edge" / "mosquitto.log"
    assert wait_until(lambda: "not authorised" in log.read_text(errors="replace"), 20), log.read_text()
    time.sleep(1.0)
    assert not center.messages, "a bridge with a wrong password got through"
