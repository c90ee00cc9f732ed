"""A community's edge broker bridged into the center (smartcommunity/edge.py): real Mosquitto
processes on free ports; the uplink is cut by killing the center broker, as a crash would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from core.influx import InfluxClient
from core.registry import system_registry
from core.settings import Settings
from smartcommunity.cli import main
from smartcommunity.edge import EdgeSpec, edge_state_topic, start_edge
from smartcommunity.services import RunningService, free_port, start_mosquitto
from tests.conftest import make_settings, wait_until

COMMUNITY = "yanling"
TOPIC = f"sc/{COMMUNITY}/gas/G-EDGE-1/telemetry"


class Listener:
    """A persistent QoS 1 subscriber (as ingest is) on one broker, recording what arrives."""

    def __init__(self, host: str, port: int, topics: list[str], client_id: str | None = None) -> None:
        self.seqs: list[int] = []
        self.arrived: list[float] = []
        self.states: list[bytes] = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"l-{uuid.uuid4().hex[:8]}",
                             clean_session=False)
        self.c.on_connect = lambda c, *a: [c.subscribe(t, qos=1) for t in topics]
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect_async(host, port, keepalive=10)
        self.c.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, c, u, msg) -> None:  # type: ignore[no-untyped-def]
        if msg.topic.startswith("sc-internal/edge/"):
            self.states.append(bytes(msg.payload))
        else:
            self.seqs.append(int(json.loads(msg.payload)["seq"]))
            self.arrived.append(time.monotonic())

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


class Publisher:
    """A device publishing QoS 1 telemetry to its edge."""

    def __init__(self, port: int) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"G-EDGE-1-{uuid.uuid4().hex[:6]}")
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def send(self, seqs: range, every_s: float = 0.0, qos0_every: int = 0) -> None:
        """`qos0_every`: every so many messages one at QoS 0 (the contract allows either)."""
        for seq in seqs:
            payload = json.dumps({"ts": int(time.time() * 1000), "seq": seq, "m": {"lel_pct": 1.0}})
            qos = 0 if qos0_every and seq % qos0_every == 0 else 1
            self.c.publish(TOPIC, payload, qos=qos).wait_for_publish(10)  # QoS 1: the edge has it
            if every_s:
                time.sleep(every_s)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@dataclass
class Site:
    center_settings: Settings
    center: RunningService
    edge_spec: EdgeSpec
    edge_dir: Path
    edge: RunningService

    def save_and_kill_center(self) -> None:
        """SIGUSR1 makes Mosquitto write its persistence file (what its periodic autosave does), then
        SIGKILL: a crash after a save, the subscriber's session on disk."""
        db = self.center_settings.data_path / "mosquitto" / "data" / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else 0
        os.kill(self.center.proc.pid, signal.SIGUSR1)
        assert wait_until(lambda: db.exists() and db.stat().st_mtime_ns != before, 10), "center did not save"
        self.center.proc.kill()
        self.center.proc.wait()

    def restart_center(self) -> float:
        self.center = start_mosquitto(self.center_settings)
        return time.monotonic()

    def restart_edge(self) -> None:
        self.edge.stop()  # SIGTERM: Mosquitto writes its queue to disk as it stops
        self.edge = start_edge(self.center_settings, self.edge_spec, self.edge_dir)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    cs = make_settings(tmp_path / "center", mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    center = start_mosquitto(cs)
    spec = EdgeSpec(COMMUNITY, [(cs.mqtt.host, cs.mqtt.port)], port=free_port())
    edge = start_edge(cs, spec, tmp_path / "edge")
    s = Site(cs, center, spec, tmp_path / "edge", edge)
    yield s
    s.edge.stop()
    s.center.stop()


def bridged(site: Site) -> Listener:
    """The center's subscriber, once the bridge says (on the center) that the uplink is up."""
    sub = Listener("127.0.0.1", site.center_settings.mqtt.port, [f"sc/{COMMUNITY}/#", edge_state_topic(COMMUNITY)],
                   client_id=f"center-sub-{uuid.uuid4().hex[:6]}")
    assert wait_until(lambda: sub.states and sub.states[-1] == b"1", 20), f"bridge never up: {sub.states}"
    return sub


def test_config_verb_writes_the_bridge_that_keeps_what_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for k in [k for k in os.environ if k.startswith("SC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SC_DATA_DIR", str(tmp_path / "var"))
    rc = main(["edge", "config", COMMUNITY, "--center", "10.0.0.1:1883", "--center", "[fd00::2]:1883",
               "--port", "2883", "--autosave", "3"])
    assert rc == 0, capsys.readouterr().err
    conf = (tmp_path / "var" / "edge" / COMMUNITY / "mosquitto.conf").read_text()
    for line in ("connection sc-edge-yanling", "address 10.0.0.1:1883 [fd00::2]:1883", "topic sc/yanling/# out 1",
                 "cleansession false", "queue_qos0_messages true", "upgrade_outgoing_qos true", "persistence true",
                 "max_queued_messages 1000000", "autosave_interval 3", "listener 2883 127.0.0.1"):
        assert line in conf.splitlines(), line
    assert "remote_password" not in conf  # not secure: no account
    # A second center that keeps its own copy: a bridge of its own (its own queue), besides the first.
    assert main(["edge", "config", COMMUNITY, "--center", "10.0.0.1:1883", "--copy", "10.0.0.2:1883"]) == 0
    bridges = (tmp_path / "var" / "edge" / COMMUNITY / "mosquitto.conf").read_text().split("\nconnection ")[1:]
    assert [b.splitlines()[:2] for b in bridges] == [["sc-edge-yanling", "address 10.0.0.1:1883"],
                                                   ["sc-edge-yanling-copy1", "address 10.0.0.2:1883"]]
    assert all("topic sc/yanling/# out 1" in b and "cleansession false" in b for b in bridges)
    assert main(["edge", "config", COMMUNITY, "--center", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    # A broker reachable from the network needs SC_SECURE, at the edge as at the center.
    assert main(["edge", "config", COMMUNITY, "--bind", "0.0.0.0"]) == 2
    assert "SC_SECURE" in capsys.readouterr().err


def test_bridge_delivers_in_order_exactly_once(site: Site) -> None:
    sub = bridged(site)
    pub = Publisher(site.edge_spec.port)
    try:
        n = 500
        pub.send(range(n))
        assert wait_until(lambda: len(sub.seqs) >= n, 20), f"{len(sub.seqs)} of {n} arrived"
        time.sleep(0.3)  # room for a duplicate to show up
        assert sub.seqs == list(range(n))
    finally:
        pub.close()
        sub.close()


def _cut_and_catch_up(site: Site, n: int, spread_s: float, restart_edge: bool, qos0_every: int = 0) -> None:
    sub = bridged(site)
    pub = Publisher(site.edge_spec.port)
    try:
        site.save_and_kill_center()
        t_cut = time.monotonic()
        pub.send(range(n), every_s=spread_s / n, qos0_every=qos0_every)
        if restart_edge:
            pub.close()
            site.restart_edge()
        cut_s = time.monotonic() - t_cut
        assert sub.seqs == [], "something reached the center while it was down"
        t_up = site.restart_center()
        assert wait_until(lambda: len(set(sub.seqs)) >= n, 60), f"{len(set(sub.seqs))} of {n} arrived"
        time.sleep(0.3)
        lost = n - len(set(sub.seqs))
        dups = len(sub.seqs) - len(set(sub.seqs))
        first = list(dict.fromkeys(sub.seqs))
        print(f"\nedge uplink cut {cut_s:.1f} s ({n} messages{', edge restarted' if restart_edge else ''}): "
              f"lost {lost}, duplicates {dups}; backlog at the center {sub.arrived[0] - t_up:.2f} s after it "
              f"came back, all of it {sub.arrived[-1] - t_up:.2f} s after; load average {os.getloadavg()[0]:.1f}")
        assert lost == 0
        assert first == list(range(n)), "backlog out of order"
    finally:
        pub.close()
        sub.close()


def test_cut_uplink_loses_nothing(site: Site) -> None:
    _cut_and_catch_up(site, n=200, spread_s=10.0, restart_edge=False, qos0_every=4)


def test_edge_restarted_while_cut_keeps_its_queue(site: Site) -> None:
    _cut_and_catch_up(site, n=200, spread_s=1.0, restart_edge=True, qos0_every=4)


def test_readings_through_the_edge_are_stored_once(settings: Settings, influx: InfluxClient, start_ingest: Any,
                                                   tmp_path: Path) -> None:
    """Devices → edge → center → ingest → InfluxDB: every reading stored, a repeated one once."""
    dev = min((d for d in system_registry(settings).values() if d.community == COMMUNITY and d.kind == "gas"),
              key=lambda d: d.device_id)
    edge = start_edge(settings, EdgeSpec(COMMUNITY, [(settings.mqtt.host, settings.mqtt.port)], port=free_port()),
                      tmp_path / "edge")
    start_ingest()
    pub = Publisher(edge.url.port)
    try:
        t0 = int(time.time() * 1000) - 60_000
        for i in range(20):
            body = json.dumps({"ts": t0 + i * 1000, "seq": i, "m": {"lel_pct": float(i)}})
            for _ in range(2 if i == 7 else 1):  # one sent twice: at-least-once, stored once
                pub.c.publish(f"sc/{COMMUNITY}/gas/{dev.device_id}/telemetry", body, qos=i % 2).wait_for_publish(10)

        def stored() -> int:
            series = influx.query(f"SELECT count(lel_pct) FROM gas WHERE device_id = '{dev.device_id}'")
            return int(series[0].values[0][1]) if series and series[0].values else 0

        assert wait_until(lambda: stored() >= 20, 20), f"{stored()} of 20 stored"
        time.sleep(0.5)
        assert stored() == 20
    finally:
        pub.close()
        edge.stop()


class Uplink:
    """A TCP relay from the edge's bridge to the center that can go silent as a cut cable does: no
    reset, nothing delivered either way (what was in flight is lost on the wire), new connections
    hang. Restored, the connections of the cut are dropped (as the center's keepalive would) and new
    ones relay again."""

    def __init__(self, target_port: int) -> None:
        import socket

        self.target = target_port
        self.silent = False
        self.conns: list[Any] = []
        self.dropped_bytes = 0
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            b = None if self.silent else socket.create_connection(("127.0.0.1", self.target))
            conn = (a, b, self.silent)
            self.conns.append(conn)
            if b is not None:
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
                threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.close()
                return
            if self.silent:
                self.dropped_bytes += len(data)
                continue
            with contextlib.suppress(OSError):
                dst.sendall(data)

    def cut(self) -> None:
        self.silent = True

    def restore(self) -> None:
        self.silent = False
        for a, b, _ in self.conns:
            for s in (a, b):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.shutdown(2)
                        s.close()
        self.conns = []

    def close(self) -> None:
        self.restore()
        self.srv.close()


@pytest.mark.slow
def test_silent_cut_loses_nothing(tmp_path: Path) -> None:
    """The uplink goes silent mid-stream (no reset): what the bridge sent into it is never acknowledged,
    it notices by its keepalive, queues, and resends once the link is back."""
    cs = make_settings(tmp_path / "center", mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    center = start_mosquitto(cs)
    uplink = Uplink(cs.mqtt.port)
    spec = EdgeSpec(COMMUNITY, [("127.0.0.1", uplink.port)], port=free_port(), keepalive_s=5)
    edge = start_edge(cs, spec, tmp_path / "edge")
    sub = Listener("127.0.0.1", cs.mqtt.port, [f"sc/{COMMUNITY}/#", edge_state_topic(COMMUNITY)])
    pub = Publisher(spec.port)
    try:
        assert wait_until(lambda: sub.states and sub.states[-1] == b"1", 20), f"bridge never up: {sub.states}"
        n = 300
        pub.send(range(100), every_s=0.01, qos0_every=4)
        uplink.cut()
        t_cut = time.monotonic()
        pub.send(range(100, n), every_s=12.0 / 200, qos0_every=4)  # through the keepalive's notice
        before = len(set(sub.seqs))
        uplink.restore()
        t_up = time.monotonic()
        assert wait_until(lambda: len(set(sub.seqs)) >= n, 40), f"{len(set(sub.seqs))} of {n} arrived"
        time.sleep(0.3)
        dups = len(sub.seqs) - len(set(sub.seqs))
        order = list(dict.fromkeys(sub.seqs))
        # Arrived after a later message had: in-flight ones the bridge resent after it had moved on.
        late, top = [], -1
        for k in order:
            if k < top:
                late.append(k)
            top = max(top, k)
        print(f"\nsilent uplink cut {t_up - t_cut:.1f} s: {uplink.dropped_bytes} bytes lost on the wire, "
              f"{before} of {n} at the center before the link came back; all {n} in "
              f"{sub.arrived[-1] - t_up:.2f} s after it; duplicates {dups}; arrived after a later one: {late} "
              f"(of {order[-5:]} last); load average {os.getloadavg()[0]:.1f}")
        assert uplink.dropped_bytes > 0, "nothing was in flight: the cut tested nothing"
        assert sorted(order) == list(range(n))
        assert len(late) <= 5, f"more than a few in-flight messages out of order: {late}"
    finally:
        pub.close()
        sub.close()
        uplink.close()
        edge.stop()
        center.stop()
