"""`smartcommunity install`: the systemd units pass `systemd-analyze verify`, each runs the verb `up`
gives its part, with the hardening asked for; `services run` (their broker and database) serves."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.influx import InfluxClient
from smartcommunity.install import DATA_DIR
from smartcommunity.services import free_port, port_open
from smartcommunity.services_cli import PARTS
from tests.conftest import wait_until

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def sc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    return subprocess.run([sys.executable, "-m", "smartcommunity", *args], env=base | (env or {}),
                          capture_output=True, text=True, timeout=60)


def read_unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(path)
    return cp


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    modbus = tmp_path / "modbus.yaml"
    modbus.write_text(Path("bridges/modbus.sample.yaml").read_text())
    out = sc("install", "--unit-dir", str(tmp_path / "units"), "--env-file", str(tmp_path / "sc.env"),
             "--no-create-user", "--onenet-port", "8091", "--modbus-config", str(modbus),
             "--rtsp-config", str(modbus.with_name("rtsp.yaml")),
             env={"SC_HTTP_PORT": "8123"})
    assert out.returncode == 0, out.stderr
    return tmp_path


def test_units_name_the_verbs_and_are_hardened(installed: Path) -> None:
    units = {p.name: read_unit(p) for p in (installed / "units").glob("*.service")}
    want = {f"smartcommunity-{name}.service": verb for name, verb in PARTS}
    want |= {"smartcommunity-mosquitto.service": ["services", "run", "mosquitto"],
             "smartcommunity-influxdb.service": ["services", "run", "influxdb"],
             "smartcommunity-bridge-onenet.service": ["bridge", "onenet", "--port", "8091"],
             "smartcommunity-bridge-modbus.service": ["bridge", "modbus", "--config", str(installed / "modbus.yaml")],
             "smartcommunity-bridge-rtsp.service": ["bridge", "rtsp", "--config", str(installed / "rtsp.yaml")]}
    assert set(units) == set(want)
    for name, unit in units.items():
        svc = unit["Service"]
        assert svc["ExecStart"].split() == [sys.executable, "-m", "smartcommunity", *want[name]], name
        assert svc["User"] == "smartcommunity" and svc["Restart"] == "always", name
        assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "yes" and svc["PrivateTmp"] == "yes"
        assert svc["ReadWritePaths"] == str(DATA_DIR) and svc["StateDirectory"] == DATA_DIR.name
        assert svc["EnvironmentFile"] == str(installed / "sc.env")
        if name not in ("smartcommunity-mosquitto.service", "smartcommunity-influxdb.service"):
            assert "smartcommunity-mosquitto.service" in unit["Unit"]["After"].split(), name
    target = read_unit(installed / "units" / "smartcommunity.target")
    assert set(target["Unit"]["Wants"].split()) == set(units)
    env = (installed / "sc.env").read_text().splitlines()
    assert f"SC_DATA_DIR={DATA_DIR}" in env and "SC_HTTP_PORT=8123" in env
    assert (installed / "sc.env").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine")
def test_systemd_analyze_verify_accepts_them(installed: Path) -> None:
    files = sorted(str(p) for p in (installed / "units").iterdir())
    out = subprocess.run([str(SYSTEMD_ANALYZE), "verify", *files], capture_output=True, text=True, timeout=60)
    # verify says a bad value or a missing binary on stderr, sometimes with exit code 0
    complaints = [ln for ln in (out.stdout + out.stderr).splitlines() if "smartcommunity" in ln]
    assert out.returncode == 0 and not complaints, out.stdout + out.stderr
    # ... and it would catch one
    bad = installed / "units" / "smartcommunity-ingest.service"
    bad.write_text(bad.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    out = subprocess.run([str(SYSTEMD_ANALYZE), "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "protect system value" in out.stderr


def test_print_writes_nothing(tmp_path: Path) -> None:
    out = sc("install", "--print", "--unit-dir", str(tmp_path / "units"), "--env-file", str(tmp_path / "env"))
    assert out.returncode == 0, out.stderr
    assert "ExecStart=" in out.stdout and "[Install]" in out.stdout and "SC_DATA_DIR=" in out.stdout
    assert not (tmp_path / "units").exists() and not (tmp_path / "env").exists()


def test_distro_services_are_depended_on(tmp_path: Path) -> None:
    out = sc("install", "--print", "--services", "distro")
    assert out.returncode == 0, out.stderr
    assert "smartcommunity-mosquitto.service" not in out.stdout
    assert "After=network-online.target mosquitto.service influxdb.service" in out.stdout


def test_services_run_serves_in_the_foreground(tmp_path: Path) -> None:
    """The ExecStart of the broker's and the database's units: configured as `up` does, in the foreground."""
    mqtt_port, influx_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env |= {"SC_DATA_DIR": str(tmp_path / "var"), "SC_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "SC_INFLUX_URL": f"http://127.0.0.1:{influx_port}"}
    procs = [subprocess.Popen([sys.executable, "-m", "smartcommunity", "services", "run", name], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name in ("mosquitto", "influxdb")]
    try:
        assert wait_until(lambda: port_open("127.0.0.1", mqtt_port), timeout=20)
        client = InfluxClient(f"http://127.0.0.1:{influx_port}", "x")
        try:
            assert wait_until(lambda: client.ping(0.5), timeout=60)
        finally:
            client.close()
        assert (tmp_path / "var" / "mosquitto" / "mosquitto.conf").exists()
        for p in procs:
            assert p.poll() is None  # the service itself, not a launcher that returned
            p.send_signal(signal.SIGTERM)
            assert p.wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
