"""The hostile-client suite's web half: a REAL `smartcommunity dashboard` process (waitress, the
project's own server settings) on a free port, driven over real HTTP from real sockets.

Clients can take their own loopback source address (127.0.0.2, 127.0.0.3 ...), so per-address
limits are seen exactly as the server sees a neighbour on the Wi-Fi and a colleague.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from alerts.command import endpoint_path
from alerts.store import AlertStore, store_path
from core.contract import Alert
from smartcommunity.services import RunningService, free_port

ROOT = Path(__file__).resolve().parents[3]  # the repository
API_TOKEN = "tok-" + uuid.uuid4().hex
PASSWORD = "correct horse battery"


class LiveDashboard:
    def __init__(self, data: Path, broker_port: int | None, **env: str) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        self.env.update(
            SC_DATA_DIR=str(data),
            SC_HTTP_PORT=str(self.port),
            SC_MQTT_URL=f"mqtt://127.0.0.1:{broker_port or 9}",
            SC_INFLUX_URL="http://127.0.0.1:9",
            SC_AUTO_INSTALL="0",
            SC_LOG_LEVEL="INFO",
            **env,
        )
        self.log = data / "dashboard.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.alerts: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90, extra_args: tuple[str, ...] = ()) -> LiveDashboard:
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # The alert service beside it, as deployed: staff actions are commands to it.
            if self.alerts is None or self.alerts.poll() is not None:
                self.alerts = subprocess.Popen([sys.executable, "-m", "smartcommunity", "alerts"], cwd=ROOT,
                                               env=self.env, stdout=out, stderr=subprocess.STDOUT)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smartcommunity", "dashboard", "--port", str(self.port), *extra_args],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            try:
                requests.get(self.url + "/api/health", timeout=2)
                if endpoint_path(self.data).exists():  # the alert service takes commands too
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("dashboard did not answer: " + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        for proc in (self.proc, self.alerts):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """The real `smartcommunity` command against this dashboard's data directory."""
        return subprocess.run(
            [sys.executable, "-m", "smartcommunity", *args], cwd=ROOT, env=self.env, input=stdin,
            capture_output=True, text=True, timeout=60,
        )

    def add_user(self, username: str, role: str = "operator", name: str | None = None) -> None:
        r = self.cli("users", "add", username, "--name", name or username, "--role", role, stdin=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr

    def alert(self) -> Alert:
        """A new active red alert in the dashboard's store (as the alert engine would write it)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        dev = f"gas-{uuid.uuid4().hex[:8]}"
        a = Alert(f"a-{uuid.uuid4().hex[:12]}", "gas_lel_high", "red", "active", "lanshanjun", None,
                  dev, "gas", "lel_pct", 31.0, 25.0, None, None, now, now, "燃气浓度 31.0 %LEL ≥ 25 %LEL")
        store = AlertStore(store_path(self.data))
        try:
            store.insert(a, dev)
        finally:
            store.close()
        return a

    def state(self, alert_id: str) -> Alert:
        store = AlertStore(store_path(self.data))
        try:
            got = store.get(alert_id)
        finally:
            store.close()
        assert got is not None
        return got


class SourceAdapter(HTTPAdapter):
    """Connections from a chosen loopback address."""

    def __init__(self, source_ip: str) -> None:
        self.source_ip = source_ip
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


class Client(requests.Session):
    """A browser-like client of one dashboard: same-origin Origin on POSTs, the CSRF header Dash sends."""

    def __init__(self, live: LiveDashboard, source_ip: str = "127.0.0.1") -> None:
        super().__init__()
        self.live = live
        self.source_ip = source_ip
        self.mount("http://", SourceAdapter(source_ip))

    def login_csrf(self) -> str:
        form = self.get(self.live.url + "/login", timeout=10).text
        m = re.search(r'name="csrf" value="([^"]+)"', form)
        assert m, form
        return m.group(1)

    def sign_in(self, username: str, password: str = PASSWORD, nxt: str = "/") -> requests.Response:
        csrf = self.login_csrf()
        return self.post(self.live.url + "/login", allow_redirects=False, timeout=30,
                         headers={"Origin": self.live.url},
                         data={"username": username, "password": password, "next": nxt, "csrf": csrf})

    def sign_out(self) -> requests.Response:
        form = self.get(self.live.url + "/logout", timeout=10).text
        m = re.search(r'name="csrf" value="([^"]+)"', form)
        assert m, form
        return self.post(self.live.url + "/logout", data={"csrf": m.group(1)}, allow_redirects=False,
                         headers={"Origin": self.live.url}, timeout=10)

    def callback(
        self, body: dict[str, Any], origin: str | None = "same", csrf: str | None = "cookie"
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if origin == "same":
            headers["Origin"] = self.live.url
        elif origin is not None:
            headers["Origin"] = origin
        if csrf == "cookie":
            token = self.cookies.get("_csrf_token")
            if token:
                headers["X-CSRFToken"] = token
        elif csrf is not None:
            headers["X-CSRFToken"] = csrf
        return self.post(self.live.url + "/_dash-update-component", json=body, headers=headers,
                         allow_redirects=False, timeout=30)


def ack_body(live: LiveDashboard, alert_id: str, note: str = "") -> dict[str, Any]:
    """The body dash-renderer posts when 确认 is clicked on `alert_id`, built from the app's own
    /_dash-dependencies (the callback whose input is the ack buttons)."""
    deps = _deps(live)
    dep = next(d for d in deps if any(isinstance(i["id"], str) and "ack-btn" in i["id"] for i in d["inputs"]))
    inputs: list[Any] = []
    changed = []
    for i in dep["inputs"]:
        pid = _concrete(i["id"], alert_id)
        inputs.append([{"id": pid, "property": i["property"], "value": 1}])
        changed.append(f"{_id_str(pid)}.{i['property']}")
    state = [{"id": s["id"], "property": s["property"], "value": note if "note" in s["id"] else None}
             for s in dep["state"]]
    outputs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]}
               for o in dep["output"].strip(".").split("...")]
    return {"output": dep["output"], "outputs": outputs, "inputs": inputs, "changedPropIds": changed,
            "state": state}


_DEPS: dict[str, Any] = {}


def _deps(live: LiveDashboard) -> Any:
    """The callback graph, read once per dashboard by a signed-in operator."""
    if live.url not in _DEPS:
        c = Client(live)
        c.sign_in("deps-reader")
        r = c.get(live.url + "/_dash-dependencies", timeout=10)
        assert r.status_code == 200, r.text
        _DEPS[live.url] = r.json()
    return _DEPS[live.url]


def _concrete(dep_id: str, alert_id: str) -> dict[str, Any]:
    import json

    pattern = json.loads(dep_id)
    return {k: (alert_id if isinstance(v, list) else v) for k, v in pattern.items()}


def _id_str(pid: dict[str, Any]) -> str:
    import json

    return json.dumps(pid, sort_keys=True, separators=(",", ":"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, broker: RunningService) -> Iterator[LiveDashboard]:
    """A dashboard with an API token and staff accounts: deps-reader, zhang (operator), viewer."""
    d = LiveDashboard(tmp_path_factory.mktemp("web") / "var", broker.url.port, SC_API_TOKEN=API_TOKEN)
    d.start()
    for name, role in (("deps-reader", "operator"), ("zhang", "operator"), ("kan", "viewer"), ("boss", "admin")):
        d.add_user(name, role, name={"zhang": "张三", "kan": "看板员", "boss": "主任"}.get(name))
    yield d
    d.stop()
