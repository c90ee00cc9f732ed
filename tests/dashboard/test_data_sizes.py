"""Each part's folder under SC_DATA_DIR measured by a periodic scan (never per request), reported by
/api/health's disk entry and /metrics, and a warning past the configured share of the disk."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace

from core.settings import Settings
from dashboard import alertview
from dashboard.app import create_app
from dashboard.theme import DATA_DIR_SHARE
from tests.conftest import wait_until


def du_bytes(path: os.PathLike[str]) -> int:
    return int(subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def test_folder_sizes_in_health_and_metrics(settings: Settings) -> None:
    s = replace(settings, data_scan_s=1.0)
    blob = s.data_path / "blobstore"
    blob.mkdir(parents=True)
    (blob / "a.bin").write_bytes(os.urandom(3 * 2**20))
    app = create_app(s, live_mqtt=False)
    dctx = app.server.config["SC_DASHBOARD"]
    dctx.health.cache_s = 0
    client = app.server.test_client()
    try:
        def disk() -> dict:  # type: ignore[type-arg]
            return client.get("/api/health").json["details"]["disk"]

        assert wait_until(lambda: disk().get("scanned_at") is not None, 10)
        first = disk()
        assert abs(first["folders_mb"]["blobstore"] * 2**20 - du_bytes(blob)) < 0.01 * 2**20, first
        assert first["folders_mb"]["blobstore"] >= 3.0
        # Requests do not rescan: ten see one scan a period (plus a period's edge), not ten.
        t0 = time.monotonic()
        seen = {disk()["scanned_at"] for _ in range(10)}
        assert len(seen) <= int((time.monotonic() - t0) / s.data_scan_s) + 2 < 10, seen
        (blob / "b.bin").write_bytes(os.urandom(2 * 2**20))  # shows at the next period
        assert wait_until(lambda: disk()["folders_mb"]["blobstore"] >= 5.0, 10)
        assert abs(disk()["folders_mb"]["blobstore"] * 2**20 - du_bytes(blob)) < 0.01 * 2**20
        text = client.get("/metrics").get_data(as_text=True)
        line = next(ln for ln in text.splitlines() if ln.startswith('sc_data_dir_bytes{folder="blobstore"}'))
        assert float(line.split()[-1]) == du_bytes(blob)
        body = dctx.health.report()[1]
        assert body["disk"] == "ok" and "warning" not in body["details"]["disk"]
    finally:
        dctx.close()


def test_warns_past_the_configured_share_of_the_disk(settings: Settings) -> None:
    s = replace(settings, data_scan_s=1.0, data_dir_max_pct=0.00001)  # a few hundred kB of a big disk
    (s.data_path / "blobstore").mkdir(parents=True)
    (s.data_path / "blobstore" / "a.bin").write_bytes(os.urandom(2**20))
    app = create_app(s, live_mqtt=False)
    dctx = app.server.config["SC_DASHBOARD"]
    dctx.health.cache_s = 0
    try:
        assert wait_until(lambda: dctx.health.report()[1]["disk"] == "warn", 10)
        body = dctx.health.report()[1]
        detail = body["details"]["disk"]
        assert detail["data_dir_share_pct"] > 0.00001 and "blobstore" in detail["warning"]
        light = next(sp for sp in alertview.service_bar(body) if "数据盘" in sp.children)
        assert light.className == "svc warn"
        assert DATA_DIR_SHARE.format(pct=detail["data_dir_share_pct"], max=0.00001) in light.title
    finally:
        dctx.close()
