"""Logs under `up` rotate by size: a part's output in SC_DATA_DIR/log/<part>.log, the broker's in
mosquitto/mosquitto.log, each copied by one pump through RotatingFileHandler."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from core.logfiles import log_dir
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from smartcommunity.services import MOSQUITTO, RunningService, _launch, find_binary
from smartcommunity.supervisor import Supervisor
from tests.conftest import make_settings, wait_until

MAX = 50_000


def test_a_parts_log_rotates_by_size(settings: Settings) -> None:
    s = replace(settings, log_max_bytes=MAX, log_backups=2)
    ids = set(load_registry(ensure_registry(s)))
    # A part that writes ~280 kB (a line per device) and exits; `up` restarts it, as it would any part.
    sup = Supervisor(s, [("lister", ["devices", "list"])])
    logs = log_dir(s)
    watcher = threading.Thread(target=lambda: (wait_until(lambda: (logs / "lister.log.2").exists()
                                                          and sup.children[0].crashes >= 1, 60),
                                               sup.request_stop()), daemon=True)
    watcher.start()
    assert sup.run() == 0
    files = sorted(p.name for p in logs.iterdir())
    assert files == ["lister.log", "lister.log.1", "lister.log.2"], files  # two kept, older ones gone
    for name in files:
        text = (logs / name).read_text()
        assert 0 < len(text.encode()) <= MAX, name
        lines = [ln for ln in text.splitlines() if ln.strip()]
        named = [ln for ln in lines if ln.split()[0] in ids]
        assert len(named) > len(lines) * 0.9, (name, lines[:3])  # the part's own lines, whole
    assert (logs / "lister.log").stat().st_mode & 0o777 == 0o600


def test_a_services_output_rotates_too(tmp_path: Path, broker: RunningService) -> None:
    assert broker.pump is not None  # the test broker's own output goes through a pump
    s = replace(make_settings(tmp_path / "var"), log_max_bytes=600, log_backups=3)
    path = s.data_path / "mosquitto" / "mosquitto.log"
    binary = find_binary("mosquitto")
    assert binary
    for _ in range(6):  # Mosquitto's usage text (~0.5 kB a run), as `up` would log its output
        svc = _launch(MOSQUITTO, [binary, "-h"], path, broker.url, False, s)
        svc.proc.wait(10)
        assert svc.pump is not None
        svc.pump.join()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["mosquitto.log", "mosquitto.log.1", "mosquitto.log.2", "mosquitto.log.3"], files
    for name in files:
        data = (path.parent / name).read_bytes()
        assert 0 < len(data) <= 600, name
    assert any(b"mosquitto" in (path.parent / n).read_bytes() for n in files)
