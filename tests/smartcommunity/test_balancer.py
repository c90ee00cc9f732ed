"""Two real dashboard instances behind HAProxy (`smartcommunity balancer`): either serves any request
and any signed-in person; the instance a wall display is on is killed and the wall carries on through
the other with at most one reload, showing a new alert. Screenshot: /tmp/balancer_wall.png."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from smartcommunity.balancer import COOKIE, BalancerError, config, parse_backend
from smartcommunity.services import RunningService, find_binary, free_port
from tests.conftest import wait_until
from tests.dashboard.test_dash_browser import ARGS, CHROMIUM
from tests.security.web.conftest import PASSWORD, ROOT, Client, LiveDashboard

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")


def test_config_refuses_bad_backends_and_checks_liveness() -> None:
    with pytest.raises(BalancerError):
        parse_backend("10.0.0.1")
    with pytest.raises(BalancerError):
        parse_backend("10.0.0.1:99999")
    text = config("127.0.0.1", 8050, [("10.0.0.11", 8050), ("10.0.0.12", 8050)])
    assert "server d1 10.0.0.11:8050" in text and "server d2 10.0.0.12:8050" in text
    assert "rstatus ^(200|503)$" in text  # a dashboard whose InfluxDB is down still serves pages


class Balanced:
    def __init__(self, tmp: Path, broker: RunningService) -> None:
        data = tmp / "var"
        self.a = LiveDashboard(data, broker.url.port)
        self.b = LiveDashboard(data, broker.url.port)  # the same host: one data dir, one alert service
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.a.start()
        self.b.alerts = self.a.alerts
        self.b.start()
        log = (self.a.data / "balancer.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartcommunity", "balancer", "--port", str(self.port),
             "--backend", f"127.0.0.1:{self.a.port}", "--backend", f"127.0.0.1:{self.b.port}"],
            cwd=ROOT, env=self.a.env, stdout=log, stderr=subprocess.STDOUT)
        assert wait_until(lambda: self._up(), timeout=30), (self.a.data / "balancer.log").read_text()

    def _up(self) -> bool:
        try:
            r = requests.get(self.url + "/api/health", timeout=2)  # a dashboard's answer, not HAProxy's 503
            return r.status_code in (200, 503) and r.headers.get("Content-Type", "").startswith("application/json")
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.b.alerts = None
        for d in (self.b, self.a):
            d.stop()


@pytest.fixture
def balanced(tmp_path: Path, broker: RunningService) -> Iterator[Balanced]:
    if not find_binary("haproxy"):
        r = subprocess.run(["apt-get", "install", "-y", "-q", "haproxy"], capture_output=True, check=False)
        if r.returncode != 0 or not find_binary("haproxy"):
            pytest.skip("HAProxy is not installed (apt-get install haproxy) and could not be installed here")
    lb = Balanced(tmp_path, broker)
    try:
        lb.start()
        yield lb
    finally:
        lb.stop()


def test_either_instance_serves_and_a_wall_survives_losing_its_own(balanced: Balanced) -> None:
    lb = balanced
    lb.a.add_user("zhang", "operator", name="张三")
    person = Client(lb.a)
    person.live = lb  # type: ignore[assignment]  # its forms and Origin are the balancer's address
    assert person.sign_in("zhang", PASSWORD).status_code in (302, 303)
    assert person.get(lb.url + "/api/alerts", timeout=10).status_code == 200
    pinned = person.cookies.get(COOKIE)
    assert pinned in ("d1", "d2")
    # Any instance serves this person: the other one directly, with the same session cookie.
    other = lb.b if pinned == "d1" else lb.a
    direct = requests.get(other.url + "/api/alerts", cookies={k: v for k, v in person.cookies.items() if k != COOKIE},
                          timeout=10)
    assert direct.status_code == 200

    first = lb.a.alert()
    url = lb.a.cli("users", "display-link", "--base-url", lb.url).stdout.strip()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
        wall = ctx.new_page()
        wall.goto(url)
        wall.wait_for_url(lb.url + "/wall")
        wall.wait_for_selector(f"text={first.message}", timeout=30_000)
        on = next(c["value"] for c in ctx.cookies() if c["name"] == COOKIE)
        loads: list[float] = []
        wall.on("load", lambda _p: loads.append(time.monotonic()))

        dead, alive = (lb.a, lb.b) if on == "d1" else (lb.b, lb.a)
        assert dead.proc is not None
        dead.proc.kill()  # the instance the wall is on dies
        killed = time.monotonic()
        nxt = lb.a.alert()  # a new alert after the loss (in the store, as the engine writes it)
        wall.wait_for_selector(f"text={nxt.device_id}", timeout=45_000)  # its device, named in the wall's list
        shown = time.monotonic() - killed
        wall.screenshot(path="/tmp/balancer_wall.png")
        browser.close()
    print(f"wall: new alert shown {shown:.1f} s after its instance was killed, {len(loads)} reload(s)")
    assert len(loads) <= 1
    assert alive.proc is not None and alive.proc.poll() is None
    assert person.get(lb.url + "/api/alerts", timeout=10).status_code == 200  # the person too: redispatched
