"""`devices provision` / `devices revoke`: per-device accounts, hashed, least-privilege ACL, and
revocation that takes effect on the running broker without restarting it or its other clients."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from core.accounts import MQTT_ALERTS, MQTT_INGEST
from security.broker import broker_files, hash_password, provision, revoke, verify_password
from tests.conftest import make_settings
from tests.security.conftest import Probe, SecureStack, device_probe, service_probe, telemetry, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_hash_is_mosquittos_own_format() -> None:
    h = hash_password("s3cret", salt=b"\x01" * 12, iterations=101)
    assert h.startswith("$7$101$") and verify_password("s3cret", h) and not verify_password("s3cre7", h)
    # mosquitto_passwd writes the same format (checked when the tool is installed)
    tool = "/usr/bin/mosquitto_passwd"
    if os.path.exists(tool):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "pw"
            subprocess.run([tool, "-c", "-b", str(f), "u", "pw-from-tool"], check=True, capture_output=True)
            theirs = f.read_text().strip().split(":", 1)[1]
            assert verify_password("pw-from-tool", theirs) and not verify_password("other", theirs)


def test_provisioned_files_are_private_and_hold_no_plaintext(secure: SecureStack) -> None:
    files = broker_files(secure.settings)
    for p in (files.accounts, files.passwd, files.acl, secure.creds_dir / f"{secure.devices('gas')[0].device_id}.json",
              secure.settings.secrets_path / "mqtt" / MQTT_INGEST, secure.settings.data_path / "pki" / "ca.key",
              secure.settings.data_path / "pki" / "broker.key"):
        assert _mode(p) == 0o600, p
    assert _mode(secure.settings.secrets_path) == 0o700
    dev = secure.devices("gas")[0]
    password = secure.creds(dev.device_id)["password"]
    passwd = files.passwd.read_text()
    assert password not in passwd and password not in files.accounts.read_text()
    line = next(ln for ln in passwd.splitlines() if ln.startswith(dev.device_id + ":"))
    assert verify_password(password, line.split(":", 1)[1])
    acl = files.acl.read_text()
    block = acl.split(f"\nuser {dev.device_id}\n", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert block == [f"topic write sc/{dev.community}/{dev.kind}/{dev.device_id}/#"]
    assert "topic write sc/alerts/#" in acl.split(f"\nuser {MQTT_ALERTS}\n", 1)[1].split("\n\n", 1)[0]


def test_cli_provision_by_community_and_out_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_DATA_DIR=str(tmp_path / "var"), SC_SECURE="1")
    out = tmp_path / "creds"
    r = subprocess.run([sys.executable, "-m", "smartcommunity", "devices", "provision", "--community", "yanhu",
                        "--out", str(out)], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("*.json"))
    assert files and all(json.loads(f.read_text())["community"] == "yanhu" for f in files)
    assert all(_mode(f) == 0o600 for f in files)
    assert "no running broker" in r.stdout
    # A second run keeps the passwords it issued (nothing new to hand out) ...
    r2 = subprocess.run([sys.executable, "-m", "smartcommunity", "devices", "provision", "--community", "yanhu",
                         "--out", str(tmp_path / "again")], env=env, capture_output=True, text=True, timeout=120,
                        cwd=ROOT)
    assert r2.returncode == 0 and r2.stdout.startswith("0 device accounts issued"), r2.stdout
    # ... and a bad name is a clear error.
    r3 = subprocess.run([sys.executable, "-m", "smartcommunity", "devices", "revoke", "NO-SUCH"], env=env,
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r3.returncode == 2 and "no such broker account: NO-SUCH" in r3.stderr


def test_revocation_without_restarting_broker_or_other_clients(secure: SecureStack, probes: list[Probe]) -> None:
    victim, bystander = secure.devices("power", "gongyixincun")[:2]
    pid_before = secure.broker.proc.pid
    reader = service_probe(secure, probes, MQTT_INGEST, subscribe=["sc/+/power/#"])
    pv = device_probe(secure, probes, victim)
    pb = device_probe(secure, probes, bystander)
    old = secure.creds(victim.device_id)["password"]
    _names, reloaded = revoke(secure.settings, secure.registry, [victim.device_id])
    assert reloaded
    assert wait_until(lambda: pv.disconnects() >= 1, timeout=10), "revoked device still connected"
    time.sleep(2.5)  # paho retries; each reconnect must be refused
    assert pv.refused() and not pv.c.is_connected()
    b_topic = f"sc/{bystander.community}/power/{bystander.device_id}/telemetry"
    pb.publish(b_topic, telemetry("temp_c", 30.0)).wait_for_publish(5)
    assert wait_until(lambda: any(t == b_topic for t, _, _ in reader.messages))
    assert pb.disconnects() == 0 and reader.disconnects() == 0
    assert secure.broker.alive() and secure.broker.proc.pid == pid_before
    # Provisioning again gives the device a new password (the old one stays dead).
    assert not (secure.creds_dir / f"{victim.device_id}.json").exists()  # its handed-out file went too
    res = provision(secure.settings, secure.registry, ["gongyixincun"])
    assert victim.device_id in res.issued and res.reloaded
    new = secure.creds(victim.device_id)
    assert new["password"] != old
    back = Probe(secure, new["username"], new["password"], client_id=new["client_id"])
    probes.append(back)
    assert back.wait_connected()


def test_plain_listener_can_be_switched_off(tmp_path: Path) -> None:
    from smartcommunity.services import free_port, port_open, start_mosquitto

    s = make_settings(tmp_path / "var", secure=True, mqtt_plain=False, mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                      mqtt_tls_port=free_port())
    svc = start_mosquitto(s)
    try:
        assert port_open("127.0.0.1", s.mqtt_tls_port)
        assert not port_open("127.0.0.1", s.mqtt.port)
    finally:
        svc.stop()


def test_network_bind_requires_security(tmp_path: Path) -> None:
    import pytest

    from smartcommunity.services import ServiceError, free_port, start_mosquitto

    s = make_settings(tmp_path / "var", mqtt_bind="0.0.0.0", mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceError, match="SC_SECURE=1"):
        start_mosquitto(s)


def test_network_bind_secure_keeps_plain_listener_on_loopback(tmp_path: Path) -> None:
    import psutil

    from smartcommunity.services import free_port, start_mosquitto

    s = make_settings(tmp_path / "var", secure=True, mqtt_bind="0.0.0.0", mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                      mqtt_tls_port=free_port())
    svc = start_mosquitto(s)
    try:
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(svc.proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert ("0.0.0.0", s.mqtt_tls_port) in listening  # TLS for the devices on the network
        assert ("127.0.0.1", s.mqtt.port) in listening  # clear text only on this machine
        assert not any(port == s.mqtt.port and ip != "127.0.0.1" for ip, port in listening)
    finally:
        svc.stop()
