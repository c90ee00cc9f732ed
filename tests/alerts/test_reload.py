"""A running alert service picks up a changed rules file without a restart, and keeps its rules when
the new file is bad (logged with file, line and reason; the heartbeat names the error)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from alerts.rules import BUNDLED_RULES
from core.settings import Settings
from tests.alerts.test_gas import Running, alerts_for, gas_device, send
from tests.conftest import wait_until


def test_rules_reload_while_running_and_a_bad_file_keeps_them(
        settings: Settings, collector, publisher, tmp_path: Path, start_ingest) -> None:  # type: ignore[no-untyped-def]
    start_ingest()  # the engine gets what ingest accepted
    rules = tmp_path / "rules.yaml"
    rules.write_text(BUNDLED_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    s = dataclasses.replace(settings, alerts_rules_file=str(rules))
    dev = gas_device(s, "yanling")
    sub = collector("sc/alerts/#")
    svc = Running(s)
    try:
        send(publisher, dev, 22.0)  # below 25: nothing
        time.sleep(1.5)
        assert not alerts_for(sub, "gas_lel_high")
        rules.write_text(rules.read_text(encoding="utf-8").replace("threshold: 25", "threshold: 20", 1),
                         encoding="utf-8")
        os.utime(rules, (time.time() + 1, time.time() + 1))
        assert wait_until(lambda: svc.svc.engine.by_name["gas_lel_high"].threshold == 20, 10)
        send(publisher, dev, 22.0)
        assert sub.wait_for(lambda m: bool(alerts_for(sub, "gas_lel_high")), 5)
        rules.write_text("rules:\n  - 5\n", encoding="utf-8")
        os.utime(rules, (time.time() + 3, time.time() + 3))
        assert wait_until(lambda: svc.svc.rules.last_error is not None, 10)
        assert f"{rules}:2:" in (svc.svc.rules.last_error or "")
        assert svc.svc.snapshot()["rules_error"] == svc.svc.rules.last_error
        assert svc.svc.engine.by_name["gas_lel_high"].threshold == 20  # the running rules stay
    finally:
        svc.stop()
