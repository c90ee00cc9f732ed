"""Camera availability by RTSP against a real RTSP server (GStreamer's gst-rtsp-server, with Digest
and Basic authentication): status online, then offline when the server goes away, so the real alert
service raises `camera_offline`, and online again so it recovers; wrong credentials and cameras that
cannot be mapped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridges.rtsp import CheckFailed, RtspBridge, check, parse_config
from core.contract import Device
from core.registry import ensure_registry, load_registry
from core.secrets import private_dir, write_private
from core.settings import Settings
from ingest.deadletter import DeadLetterStore, store_path
from smartcommunity.services import free_port, port_open
from tests.conftest import RunningAlerts, wait_until

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
USER, PASSWORD = "admin", "Cam-2026!pw"


def gi_rtsp_available() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not gi_rtsp_available(), reason=(
    "GStreamer's RTSP server is not installed: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good"))


class RtspServer:
    def __init__(self, port: int, method: str) -> None:
        self.port = port
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(port), USER, PASSWORD, method],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", self.proc.stderr.read() if self.proc.stderr else line
        assert wait_until(lambda: port_open("127.0.0.1", port), 10)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def rtsp_servers() -> Iterator[Callable[..., RtspServer]]:
    made: list[RtspServer] = []

    def make(port: int | None = None, method: str = "digest") -> RtspServer:
        srv = RtspServer(port or free_port(), method)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


def registry_device(settings: Settings, kind: str) -> Device:
    reg = load_registry(ensure_registry(settings))
    return sorted((d for d in reg.values() if d.kind == kind), key=lambda d: d.device_id)[0]


def latest(col: Any, topic: str) -> dict[str, Any] | None:
    got = [orjson.loads(p) for t, p, _ in col.messages if t == topic]
    return got[-1] if got else None


def alerts_of(col: Any, device_id: str) -> list[dict[str, Any]]:
    return [a for a in col.json() if a.get("device_id") == device_id and a.get("rule") == "camera_offline"]


def test_a_camera_goes_offline_raises_camera_offline_and_recovers(
        settings: Settings, rtsp_servers: Any, collector: Any, start_ingest: Any) -> None:
    s = replace(settings, alerts_fold_window_s=1.0, alerts_silence_check_s=0.5)
    cam, gas = registry_device(s, "camera"), registry_device(s, "gas")
    private_dir(s.secrets_path)
    private_dir(s.secrets_path / "rtsp")
    write_private(s.secrets_path / "rtsp" / "gate-cam", f"{USER}:{PASSWORD}\n")
    srv = rtsp_servers()
    cfg = parse_config({"timeout_s": 2, "offline_after": 2, "min_interval_s": 0.5, "cameras": [
        {"device_id": cam.device_id, "url": srv.url, "credentials": "gate-cam", "interval_s": 0.5},
        {"device_id": "C-999999", "url": srv.url, "credentials": "gate-cam"},   # not registered
        {"device_id": gas.device_id, "url": srv.url, "credentials": "gate-cam"},  # registered, but no camera
    ]})
    status = f"sc/{cam.community}/camera/{cam.device_id}/status"
    col = collector(f"sc/{cam.community}/camera/{cam.device_id}/#")
    alerts = collector("sc/alerts/#")
    with RunningAlerts(s):
        start_ingest(s)  # the engine acts on what ingest accepted and hands on
        bridge = RtspBridge(s, cfg)
        bridge.start()
        try:
            assert col.wait_for(lambda m: (latest(col, status) or {}).get("state") == "online", 30), \
                bridge.snapshot()
            tele = f"sc/{cam.community}/camera/{cam.device_id}/telemetry"
            assert col.wait_for(lambda m: latest(col, tele) is not None, 10)
            assert latest(col, tele)["m"] == {"online": True}  # type: ignore[index]

            srv.stop()  # the camera goes away
            assert col.wait_for(lambda m: (latest(col, status) or {}).get("state") == "offline", 30)
            assert bridge.snapshot()["devices"][cam.device_id]["failures"] >= 2
            assert alerts.wait_for(lambda m: any(a["state"] == "active" for a in alerts_of(alerts, cam.device_id)), 30)

            rtsp_servers(port=srv.port)  # back, same address
            assert col.wait_for(lambda m: (latest(col, status) or {}).get("state") == "online", 30)
            assert alerts.wait_for(lambda m: any(a["state"] == "resolved" for a in alerts_of(alerts, cam.device_id)),
                                   30)
            counters = bridge.snapshot()["counters"]
            assert counters["checks"] >= 4 and counters["checks_failed"] >= 2
        finally:
            bridge.close()
    store = DeadLetterStore(store_path(s.data_path), s.deadletter_max)
    try:
        unknown = store.list(reason="unknown_device")
        wrong = store.list(reason="wrong_kind")
    finally:
        store.close()
    assert len(unknown) == 1 and orjson.loads(unknown[0]["payload"])["device_id"] == "C-999999"  # said once
    assert len(wrong) == 1 and gas.device_id in wrong[0]["detail"]


def test_basic_auth_and_wrong_credentials(rtsp_servers: Any) -> None:
    srv = rtsp_servers(method="basic")
    assert check(srv.url, (USER, PASSWORD), 5, 65536).startswith("v=0")
    with pytest.raises(CheckFailed, match="401"):
        check(srv.url, (USER, "wrong"), 5, 65536)
    with pytest.raises(CheckFailed, match="404"):
        check(srv.url.replace("/cam", "/nothing"), (USER, PASSWORD), 5, 65536)
    with pytest.raises(CheckFailed, match="larger than"):
        check(srv.url, (USER, PASSWORD), 5, 64)  # the size limit


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(ValueError, match="credentials in the URL"):
        parse_config({"cameras": [{"device_id": "C-000001", "url": "rtsp://admin:pw@10.0.0.2/cam"}]})


def test_the_command_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from smartcommunity.cli import build_parser

    f = tmp_path / "r.yaml"
    f.write_text("cameras:\n  - device_id: C-000001\n    url: rtsp://admin:secret@10.0.0.9/stream\n")
    args = build_parser().parse_args(["bridge", "rtsp", "--config", str(f)])
    assert args.func(args, Settings()) == 2
    assert "credentials in the URL" in capsys.readouterr().err
