"""`smartcommunity up` as a user runs it: other ports, its own services, a leak, a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psutil
import pytest
import requests

from core.influx import InfluxClient
from core.registry import ensure_registry, load_registry
from smartcommunity.services import free_port, port_open
from tests.conftest import Collector, make_settings, wait_until


def launch_up(tmp_path: Path, ports: dict[str, int], **extra: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`smartcommunity up` as a user starts it, on the given ports; its output goes to up.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(
        SC_MQTT_URL=f"mqtt://127.0.0.1:{ports['mqtt']}",
        SC_INFLUX_URL=f"http://127.0.0.1:{ports['influx']}",
        SC_HTTP_PORT=str(ports["http"]),
        SC_DATA_DIR=str(tmp_path / "var"),
        **extra,
    )
    with (tmp_path / "up.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", "up"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    return proc, env


@pytest.fixture
def up(tmp_path: Path):  # type: ignore[no-untyped-def]
    ports = {"mqtt": free_port(), "influx": free_port(), "http": free_port()}
    proc, env = launch_up(tmp_path, ports, SC_ALERT_HOLDOFF_S="5")
    yield proc, ports, env, tmp_path / "up.log"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_up_serves_alerts_and_stops_cleanly(up) -> None:  # type: ignore[no-untyped-def]
    proc, ports, env, log_path = up
    base = f"http://127.0.0.1:{ports['http']}"

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/api/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    assert wait_until(healthy, 60, every=0.5), log_path.read_text(errors="replace")[-3000:]
    children = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(" ".join(c.cmdline()) for c in children)
    assert "mosquitto" in names and "influxd" in names

    settings = make_settings(Path(env["SC_DATA_DIR"]), mqtt_url=env["SC_MQTT_URL"],
                             influx_url=env["SC_INFLUX_URL"])
    dev = sorted((d for d in load_registry(ensure_registry(settings)).values() if d.kind == "gas"),
                 key=lambda d: d.device_id)[0]
    sub = Collector(settings, f"sc/alerts/{dev.community}/+")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-up-pub")
    pub.connect("127.0.0.1", ports["mqtt"])
    pub.loop_start()
    ts = int(time.time() * 1000)
    t0 = time.monotonic()
    pub.publish(f"sc/{dev.community}/gas/{dev.device_id}/telemetry",
                orjson.dumps({"ts": ts, "m": {"lel_pct": 31}}), qos=1).wait_for_publish(5)
    assert sub.wait_for(lambda m: any(orjson.loads(p).get("rule") == "gas_lel_high" for _, p, _ in m), 5)
    assert time.monotonic() - t0 < 2.0
    red = [a for a in sub.json() if a["rule"] == "gas_lel_high"]
    assert len(red) == 1 and red[0]["severity"] == "red"

    influx = InfluxClient(env["SC_INFLUX_URL"], "smartcommunity")
    rows = wait_until(lambda: influx.rows(f"SELECT lel_pct FROM gas WHERE device_id = '{dev.device_id}'"), 5)
    assert rows and rows[0]["lel_pct"] == 31.0 and rows[0]["time"] == ts
    api = requests.get(f"{base}/api/alerts?state=active", timeout=5).json()
    assert red[0]["alert_id"] in {a["alert_id"] for a in api}
    influx.close()
    sub.close()
    pub.loop_stop()
    pub.disconnect()

    # SIGTERM: every child stops and every port is free again.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    for port in ports.values():
        assert not port_open("127.0.0.1", port)


def test_up_reports_a_crashed_part(up) -> None:  # type: ignore[no-untyped-def]
    proc, ports, _env, log_path = up
    assert wait_until(lambda: port_open("127.0.0.1", ports["http"]), 60, every=0.5)
    kids = psutil.Process(proc.pid).children()
    ingest = next(c for c in kids if "ingest" in c.cmdline())
    ingest.kill()
    assert wait_until(lambda: "ingest exited with code -9" in log_path.read_text(errors="replace"), 10)
    # ...and restarted it.
    assert wait_until(lambda: any("ingest" in c.cmdline() and c.pid != ingest.pid
                                  for c in psutil.Process(proc.pid).children()), 10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0


def test_up_killed_leaves_no_process(up) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL, which `up` cannot handle: its services and parts still end with it (core/procs.py)."""
    proc, ports, _env, _log_path = up
    assert wait_until(lambda: port_open("127.0.0.1", ports["http"]), 60, every=0.5)
    children = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(" ".join(c.cmdline()) for c in children)
    assert "mosquitto" in names and "influxd" in names and "ingest" in names and "alerts" in names
    proc.kill()
    proc.wait(10)
    _gone, left = psutil.wait_procs(children, timeout=40)
    try:
        assert not [c for c in left if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        for c in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                c.kill()


def test_up_replaces_a_service_that_goes_away(tmp_path: Path) -> None:
    """`up` used a broker it found; when that broker dies, `up` starts its own on the same port."""
    from smartcommunity.services import start_mosquitto

    ports = {"mqtt": free_port(), "influx": free_port(), "http": free_port()}
    ext = start_mosquitto(make_settings(tmp_path / "ext", mqtt_url=f"mqtt://127.0.0.1:{ports['mqtt']}"))
    proc, _env = launch_up(tmp_path, ports)
    log_path = tmp_path / "up.log"
    try:
        assert wait_until(lambda: port_open("127.0.0.1", ports["http"]), 60, every=0.5)
        kids = " ".join(" ".join(c.cmdline()) for c in psutil.Process(proc.pid).children())
        assert "mosquitto" not in kids  # it used the one it found
        ext.stop()
        assert wait_until(lambda: "started our own mosquitto" in log_path.read_text(errors="replace"), 20)
        assert wait_until(lambda: any("mosquitto" in " ".join(c.cmdline())
                                      for c in psutil.Process(proc.pid).children()), 5)
        assert port_open("127.0.0.1", ports["mqtt"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        ext.stop()
