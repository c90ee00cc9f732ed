"""`smartcommunity demo` as `make demo` runs it, secure by default (issue 12): one command provisions
the fleet and the services' accounts; the simulators, ingest, alerts and the dashboard all work over
TLS with their own accounts; InfluxDB needs auth; anonymous clients get nothing; files holding
personal data or secrets are 0600; and no secret appears in any log of the run."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import requests

from core.accounts import INFLUX_READER, INFLUX_WRITER
from core.influx import InfluxClient, InfluxRejected, client_for
from core.registry import ensure_registry, load_registry
from smartcommunity.services import free_port, port_open
from tests.conftest import make_settings, wait_until
from tests.security.conftest import telemetry

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "api-token-9f2c6a1e7d"


def test_secure_demo_end_to_end_and_no_secret_in_logs(tmp_path: Path) -> None:
    ports = {"mqtt": free_port(), "tls": free_port(), "influx": free_port(), "http": free_port()}
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_MQTT_URL=f"mqtt://127.0.0.1:{ports['mqtt']}", SC_MQTT_TLS_PORT=str(ports["tls"]),
               SC_INFLUX_URL=f"http://127.0.0.1:{ports['influx']}", SC_HTTP_PORT=str(ports["http"]),
               SC_DATA_DIR=str(var), SC_API_TOKEN=TOKEN, SC_ALERT_HOLDOFF_S="5", SC_LOG_LEVEL="DEBUG")
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", "demo", "--leak-after", "2"], env=env,
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{ports['http']}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def health() -> dict | None:  # type: ignore[type-arg]
        try:
            r = requests.get(f"{base}/api/health", timeout=2)
            return r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    try:
        assert wait_until(health, 120, every=1.0), log_path.read_text(errors="replace")[-4000:]
        assert "security on (SC_SECURE=1)" in log_path.read_text()
        s = make_settings(var, secure=True, mqtt_url=env["SC_MQTT_URL"], mqtt_tls_port=ports["tls"],
                          influx_url=env["SC_INFLUX_URL"])
        # InfluxDB: anonymous refused; the reader reads what the simulators sent, through ingest.
        anon = InfluxClient(env["SC_INFLUX_URL"], "smartcommunity")
        try:
            anon.rows("SELECT count(*) FROM gas")
            raise AssertionError("anonymous InfluxDB query answered")
        except InfluxRejected as exc:
            assert exc.status == 401
        reader = client_for(s, account=INFLUX_READER)
        assert wait_until(lambda: reader.rows("SELECT count(*) FROM gas"), 60, every=1.0), "no simulated data stored"
        # A real device, with the credentials the demo handed out, raises a real alert over TLS.
        reg = load_registry(ensure_registry(s))
        dev = sorted((d for d in reg.values() if d.kind == "gas" and d.community == "yanhu"),
                     key=lambda d: d.device_id)[0]
        cred = json.loads((s.secrets_path / "devices" / f"{dev.device_id}.json").read_text())
        import paho.mqtt.client as mqtt

        from core.mqtt import tls_context

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cred["client_id"])
        c.username_pw_set(cred["username"], cred["password"])
        c.tls_set_context(tls_context(s))
        c.connect("127.0.0.1", ports["tls"])
        c.loop_start()
        c.publish(f"{cred['publish_prefix']}telemetry", telemetry("lel_pct", 31.0), qos=1).wait_for_publish(10)

        def red() -> list:  # type: ignore[type-arg]
            r = requests.get(f"{base}/api/alerts?state=active", headers=auth, timeout=5)
            return [a for a in r.json() if a["device_id"] == dev.device_id and a["rule"] == "gas_lel_high"]

        assert wait_until(red, 20, every=0.5), "the device's reading raised no alert"
        c.loop_stop()
        c.disconnect()
        # Anonymous on both listeners: refused.
        for port, tls in ((ports["mqtt"], False), (ports["tls"], True)):
            a = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon")
            if tls:
                a.tls_set_context(tls_context(s))
            try:
                a.connect("127.0.0.1", port)
                rc: list = []  # type: ignore[type-arg]
                a.on_connect = lambda *x, rc=rc: rc.append(x[3])
                a.loop_start()
                assert wait_until(lambda rc=rc: rc, 5)
                assert rc[0].is_failure
            finally:
                a.loop_stop()
        writer = client_for(s, account=INFLUX_WRITER)
        try:
            writer.rows("SELECT count(*) FROM gas")
            raise AssertionError("the writer account could read")
        except InfluxRejected as exc:
            assert exc.status == 403
        reader.close()
        writer.close()
        anon.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for port in ports.values():
        assert not port_open("127.0.0.1", port)

    # Files with personal data or secrets are 0600; their folders 0700.
    private = [var / "alerts" / "alerts.sqlite", var / "deadletter" / "deadletter.sqlite",
               var / "mosquitto" / "passwd", var / "mosquitto" / "acl", var / "pki" / "broker.key"]
    private += list((var / "secrets").rglob("*"))
    outbox = list((var / "alerts").glob("outbox.jsonl*"))
    assert outbox, "the red alert notified no one"  # names and phone numbers of the on-call staff
    private += outbox
    for p in private:
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        elif p.is_dir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o700, p

    # Every part ran on its own account: none was refused, none crashed (the demo's simulated staff too).
    text = log_path.read_text(errors="replace")
    for bad in ("Traceback", "refused the connection", "no password for", "could not publish"):
        assert bad not in text, next(ln for ln in text.splitlines() if bad in ln)
    accounts = orjson.loads((var / "mosquitto" / "accounts.json").read_bytes())["accounts"]
    assert {"svc.simulator", "svc.demo-story", "svc.ingest", "svc.alerts", "svc.dashboard"} <= set(accounts)

    # No secret in any log of the run (the run's own output and every log under SC_DATA_DIR).
    secrets = [TOKEN] + [f.read_text().strip() for f in (var / "secrets").rglob("*") if f.is_file()
                         and f.parent.name in ("mqtt", "influx")]
    secrets += [orjson.loads(f.read_bytes())["password"] for f in (var / "secrets" / "devices").glob("*.json")]
    # The demo's staff passwords and wall link: printed on a terminal only, never into this log.
    demo = (var / "demo-accounts.txt").read_text(encoding="utf-8")
    secrets += re.findall(r"^  \S+ / (\S+)", demo, re.M) + re.findall(r"/display/(\S+)", demo)
    assert "sign in at" in log_path.read_text() and len(secrets) > 100 + 2
    assert len(secrets) > 100
    logs = [log_path, *var.rglob("*.log"), *var.rglob("*.log.*")]
    texts = {p: p.read_text(errors="replace") for p in logs if p.is_file()}
    assert any(texts.values())
    for p, text in texts.items():
        leaked = [next(ln for ln in text.splitlines() if sec in ln).replace(sec, "<SECRET>")[:400]
                  for sec in secrets if sec in text]
        assert not leaked, f"{p} holds secrets in: {leaked}"
