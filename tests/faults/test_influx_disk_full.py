"""InfluxDB's disk full under live telemetry (a real influxd started by the supervisor's own code on
a filled tmpfs): `/api/health` says InfluxDB is down within 10 s of its writes failing although it
answers /ping; once space is back the supervisor restarts an influxd that still refuses writes, the
spool drains, and every point sent is in InfluxDB. The slow variant keeps the disk full 5 minutes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from core import heartbeat
from core.influx import InfluxClient
from core.settings import Settings
from dashboard.health import HealthChecker
from smartcommunity.services import free_port, start_missing
from smartcommunity.supervisor import Supervisor
from tests.faults.conftest import SmallDisk
from tests.ingest.conftest import IngestProcess, Publisher, count_gas, gas_devices, gas_messages

RATE = 120.0  # msg/s over 200 devices: well inside each device's budget


@pytest.mark.parametrize("full_s", [pytest.param(4.0, id="brief"),
                                    pytest.param(300.0, id="5min", marks=[pytest.mark.slow, pytest.mark.timeout(900)])])
def test_influx_writes_fail_then_recover(full_s: float, settings: Settings, tmpfs: Callable[[int], SmallDisk],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    n = int(RATE * (full_s + 16))  # sent before, during and after the full spell
    disk = tmpfs(96)
    s = replace(settings, data_dir=str(disk.root / "var"), influx_url=f"http://127.0.0.1:{free_port()}")
    sup = Supervisor(s, [])
    sup.services = start_missing(s, announce=False)
    assert [svc.spec.name for svc in sup.services] == ["influxdb"]
    influx = InfluxClient(s.influx_url, s.influx_db)
    influx.create_database()
    health = HealthChecker(s, cache_s=0)
    ing = IngestProcess(s).start()
    pub = None
    try:
        ing.wait_connected()
        msgs = gas_messages(gas_devices(s), n, int(time.time() * 1000) - 600_000)
        pub = Publisher(s, msgs, RATE).start()
        time.sleep(3)
        assert count_gas(influx) > 0
        disk.fill()
        t_fill = time.monotonic()
        t_red = None
        while time.monotonic() - t_fill < 20:
            sup._watch_once()
            _ok, body = health.report()
            if body["influxdb"] == "down":
                t_red = time.monotonic()
                break
            time.sleep(0.3)
        assert t_red is not None, f"health never said influxdb down: {body['details']['influxdb']}"
        assert "writes failing" in body["details"]["influxdb"].get("error", "") or body["influxdb"] == "down"
        assert body["disk"] == "down"
        time.sleep(max(0.0, full_s - (time.monotonic() - t_fill)))  # full a while longer, under live traffic
        assert ing.proc is not None and ing.proc.poll() is None, ing.log()
        assert any(h["fresh"] for h in heartbeat.read_all(s.data_path, "ingest")), "ingest's heartbeat stopped"

        disk.free()
        t_free = time.monotonic()
        drained = None
        while time.monotonic() - t_free < 90:
            sup._watch_once()
            beats = ing.heartbeats()
            if (pub.done.is_set() and count_gas(influx) >= n and beats
                    and all(h.get("spool_bytes") == 0 and h.get("state") == "ok" for h in beats)):
                drained = time.monotonic()
                break
            time.sleep(0.5)
        stored = count_gas(influx)
        figures = (f"\nhealth said influxdb down {t_red - t_fill:.1f} s after its disk filled; "
              f"influxd restarted by the supervisor {len(sup.write_restarts)} time(s); "
              + (f"spool drained, {stored}/{n} points stored {drained - t_free:.1f} s after space came back "
                 f"(disk full {t_free - t_fill:.0f} s)" if drained else f"NOT drained: {stored}/{n} points after 90 s"))
        with capsys.disabled():
            print(figures)
        assert t_red - t_fill <= 10.0
        assert drained is not None and drained - t_free <= 60.0, f"{stored}/{n} stored; {ing.heartbeats()}"
        assert stored == n  # 0 points lost
        _ok, body = health.report()
        assert body["influxdb"] == "ok" and body["disk"] == "ok", body["details"]
        said = capsys.readouterr().err  # the supervisor's own words on stderr
        assert "DATA DISK 100% used" in said and "cannot write: ingest-0" in said
        assert "data disk back to" in said
    finally:
        if pub is not None:
            pub.close()
        ing.stop()
        influx.close()
        for svc in sup.services:
            svc.stop()
