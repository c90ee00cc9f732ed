"""Issue 12: 250 idle TCP connections took the dashboard and /api down (waitress connection_limit 200,
channel_timeout 60 s). Now 1,000 idle and slow connections are held open against the real server
process while a real user still gets /api/health, a signed-in page and the alert list."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time

import psutil
import requests

from dashboard.cli import raise_fd_limit
from tests.security.web.conftest import API_TOKEN, Client, LiveDashboard

IDLE = 800  # connect and say nothing
SLOW = 200  # a request header trickled a byte at a time (slowloris)


def server_connections(live: LiveDashboard) -> int:
    assert live.proc is not None
    conns = psutil.Process(live.proc.pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == live.port)


def test_thousand_idle_and_slow_connections_do_not_take_it_down(live: LiveDashboard) -> None:
    raise_fd_limit(IDLE + SLOW + 512)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= IDLE + SLOW + 512
    user = Client(live, "127.0.0.9")
    assert user.sign_in("zhang").status_code == 302

    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        for i in range(IDLE + SLOW):
            s = socket.create_connection(("127.0.0.1", live.port), timeout=10)
            if i >= IDLE:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)

        def trickle() -> None:
            while not stop.wait(1.0):
                for s in socks[IDLE:]:
                    with contextlib.suppress(OSError):
                        s.sendall(b"X")

        threading.Thread(target=trickle, daemon=True).start()
        deadline = time.monotonic() + 30
        while server_connections(live) < IDLE + SLOW and time.monotonic() < deadline:
            time.sleep(0.5)
        held = server_connections(live)
        assert held >= IDLE + SLOW, f"the server holds only {held} of {IDLE + SLOW} connections"

        for _ in range(3):  # a real user, several times over ~10 s while they stay open
            t0 = time.monotonic()
            h = requests.get(live.url + "/api/health", timeout=5)
            assert h.status_code in (200, 503) and "mqtt" in h.json()
            page = user.get(live.url + "/", allow_redirects=False, timeout=5)
            assert page.status_code == 200 and "_dash-config" in page.text
            api = requests.get(live.url + "/api/alerts", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
            assert api.status_code == 200 and isinstance(api.json(), list)
            print(f"health + page + api with {held} open connections: {time.monotonic() - t0:.2f} s")
            time.sleep(3)
        assert server_connections(live) >= IDLE  # still holding them: served alongside, not after
    finally:
        stop.set()
        for s in socks:
            s.close()


def test_silent_connections_are_closed_by_the_channel_timeout(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    d = LiveDashboard(tmp_path_factory.mktemp("idle") / "var", None, SC_DASHBOARD_CHANNEL_TIMEOUT_S="3")
    d.start()
    try:
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(50)]
        time.sleep(1)
        assert server_connections(d) >= 50
        deadline = time.monotonic() + 20
        while server_connections(d) > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server_connections(d) == 0  # waitress dropped them (checked every cleanup interval)
        for s in socks:
            s.settimeout(2)
            assert s.recv(10) == b""  # closed by the server
            s.close()
    finally:
        d.stop()
