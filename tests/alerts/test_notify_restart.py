"""The real alert process (`smartcommunity alerts`), killed with notifications pending: after the
restart every notification reaches every channel exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from core import heartbeat
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from tests.alerts.channels.receivers import Webhook, WeComRobot, dead_url
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def start(settings: Settings, channels: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(settings.env())
    env.update(SC_ALERTS_CHANNELS_FILE=str(channels), SC_NOTIFY_RETRY_FIRST_S="0.2", SC_NOTIFY_RETRY_MAX_S="0.5",
               SC_PUBLIC_URL="http://dash:8050", SC_ALERT_HOLDOFF_S="600")  # no resolutions mid-test
    return subprocess.Popen([sys.executable, "-m", "smartcommunity.cli", "alerts"], env=env, cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def subscribed(settings: Settings) -> bool:
    """The alert process's heartbeat says its broker connection is up (it subscribes on connecting)."""
    beats = heartbeat.read_all(settings.data_path, "alerts")
    if any(b.get("mqtt") == "ok" for b in beats):
        time.sleep(0.5)  # the SUBACK follows the CONNACK
        return True
    return False


def links(received) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for r in received:
        if r.body.get("msgtype") == "markdown":
            out += [x.split(")")[0] for x in r.body["markdown"]["content"].split("/alerts/")[1:]]
        elif "alert_id" in r.body and r.body.get("msgtype") is None:
            out.append(r.body["alert_id"])
    return out


def test_kill_with_pending_notifications_then_restart(settings: Settings, publisher, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      start_ingest) -> None:
    start_ingest()
    reg = load_registry(ensure_registry(settings))
    gas = sorted((d for d in reg.values() if d.kind == "gas" and d.community == "yanhu"), key=lambda d: d.device_id)
    hook_url = dead_url()  # the webhook is down at first
    port = int(hook_url.split(":")[2].split("/")[0])
    wecom = WeComRobot()
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"channels:\n  - {{id: group, kind: wecom, url: '{wecom.robot_url}'}}\n"
                        f"  - {{id: hook, kind: webhook, url: '{hook_url}'}}\n", encoding="utf-8")
    log = tmp_path / "alerts.log"

    def send(dev) -> None:  # type: ignore[no-untyped-def]
        p = {"ts": int(time.time() * 1000), "m": {"lel_pct": 40.0}}
        publisher.publish(f"sc/{dev.community}/gas/{dev.device_id}/telemetry", orjson.dumps(p),
                          qos=1).wait_for_publish(5)

    proc = start(settings, channels, log)
    hook = None
    try:
        assert wait_until(lambda: subscribed(settings), 60), log.read_text()
        for dev in gas[:3]:
            send(dev)
        # the first red alert loads the map layers (who is nearby): slow once on a loaded machine
        assert wait_until(lambda: len(links(wecom.received)) == 3, 60), log.read_text()
        time.sleep(1.0)  # the webhook has failed a few times by now
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        send(gas[3])  # while nothing runs: kept by the broker for the alert engine's session
        hook = Webhook(port=port)
        proc = start(settings, channels, log)
        assert wait_until(lambda: len(links(hook.received)) == 4, 60), log.read_text()
        assert wait_until(lambda: len(links(wecom.received)) == 4, 20), log.read_text()
        time.sleep(2.0)  # anything sent twice would have arrived by now
        w, h = links(wecom.received), links(hook.received)
        assert len(w) == len(set(w)) == 4 and sorted(w) == sorted(h)
        fails = [ln for ln in log.read_text().splitlines() if "hook: notification" in ln and "not delivered" in ln]
        assert fails, "the webhook was never tried while it was down"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        wecom.close()
        if hook is not None:
            hook.close()
