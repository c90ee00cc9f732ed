"""/api/health's clock entry and its status light: readings whose timestamps trail the host clock by
8 s, sent through the real broker and a real ingest process, make it warn; on-time readings do not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from core.settings import Settings
from core.severity import COLOUR
from dashboard import alertview
from dashboard.app import create_app
from dashboard.health import ntp_synchronised
from dashboard.theme import CLOCK_DRIFT, CLOCK_LABEL
from tests.conftest import wait_until
from tests.ingest.conftest import IngestProcess, gas_devices

READINGS = 200


@pytest.fixture
def ingest(settings: Settings, influx) -> Iterator[IngestProcess]:  # type: ignore[no-untyped-def]
    proc = IngestProcess(settings).start()
    proc.wait_connected()
    yield proc
    proc.stop()


def clock_light(body: dict) -> tuple[str, str]:  # type: ignore[type-arg]
    for span in alertview.service_bar(body):
        if CLOCK_LABEL in span.children:
            return span.className, span.title
    raise AssertionError("no clock light")


@pytest.mark.parametrize("behind_s", [8.0, 0.0])
def test_device_timestamps_behind_the_host_clock_warn(settings: Settings, ingest: IngestProcess, publisher,  # type: ignore[no-untyped-def]
                                                      behind_s: float) -> None:
    devices = gas_devices(settings, 50)
    for i in range(READINGS):
        d = devices[i % len(devices)]
        ts = int((time.time() - behind_s) * 1000)  # the device's clock, read as it sends
        body = {"ts": ts, "seq": i, "m": {"lel_pct": 1.0, "valve_open": False}}
        publisher.publish(f"sc/{d.community}/gas/{d.device_id}/telemetry", orjson.dumps(body), qos=1)
    assert wait_until(lambda: sum(int(h.get("clock_skew_n") or 0) for h in ingest.heartbeats()) >= READINGS, 20), \
        ingest.log()

    app = create_app(settings, live_mqtt=False)
    try:
        ok, body = app.server.config["SC_DASHBOARD"].health.report()
        resp = app.server.test_client().get("/api/health")
    finally:
        app.server.config["SC_DASHBOARD"].close()
    clock = body["details"]["clock"]
    assert behind_s <= clock["skew_s"] < behind_s + 2.0, clock  # arrival − ts: the delay plus the device's lag
    assert clock["readings"] >= READINGS
    assert resp.json["details"]["clock"]["readings"] >= READINGS
    light, words = clock_light(body)
    if behind_s > settings.clock_skew_warn_s:
        assert body["clock"] == "warn" and clock["drifting"] and "device timestamps" in clock["warning"]
        assert light == "svc warn"
        assert CLOCK_DRIFT.format(s=clock["skew_s"], n=clock["readings"]) in words
    else:
        assert body["clock"] == ("warn" if clock["ntp"] == "no" else "ok"), clock
        assert not clock["drifting"]
        assert light == f"svc {body['clock']}"
    # a clock warning alone does not fail the health check (no alert engine runs here: that one does)
    assert not ok and resp.status_code == 503 and body["alerts"] == "down" and body["status"] == "degraded"
    if behind_s > settings.clock_skew_warn_s:
        wall_light(settings, CLOCK_DRIFT.format(s=clock["skew_s"], n=clock["readings"]))


def wall_light(settings: Settings, words: str) -> None:
    """The wall, in Chromium: the 时钟 light is amber and says why."""
    import threading

    from waitress import create_server

    from smartcommunity.services import free_port
    from tests.dashboard.test_dash_browser import ARGS, CHROMIUM, sync_api

    app = create_app(settings, live_mqtt=False)
    port = free_port()
    srv = create_server(app.server, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=srv.run, daemon=True).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN").new_page()
            page.goto(f"http://127.0.0.1:{port}/wall")
            light = page.locator(f".svc.warn:has-text('{CLOCK_LABEL}')")
            light.wait_for(timeout=60_000)
            title = light.get_attribute("title") or ""
            assert title.startswith("注意: ") and words in title, title
            dot = light.locator(".dot").evaluate("e => getComputedStyle(e).backgroundColor")
            yellow = COLOUR["yellow"].lstrip("#")
            assert dot == "rgb({}, {}, {})".format(*(int(yellow[i:i + 2], 16) for i in (0, 2, 4))), dot
            browser.close()
    finally:
        srv.close()
        app.server.config["SC_DASHBOARD"].close()


def test_ntp_state_is_unknown_without_timedatectl_or_chrony(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))  # neither tool can be found
    assert ntp_synchronised() == "unknown"
    fake = tmp_path / "timedatectl"  # a host whose timesyncd says it has lost sync
    fake.write_text("#!/bin/sh\n[ \"$*\" = 'show -p NTPSynchronized --value' ] && echo no\n")
    fake.chmod(0o755)
    assert ntp_synchronised() == "no"
