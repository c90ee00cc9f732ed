"""Notification delivery on /metrics: per target, from the alert service's heartbeat."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from alerts.metrics import add_alerts
from alerts.service import AlertService
from core import heartbeat
from core.prometheus import HeartbeatCollector, render
from core.settings import Settings
from tests.alerts.channels.conftest import sample_alert
from tests.alerts.channels.receivers import WeComRobot, dead_url
from tests.conftest import wait_until


def test_delivery_series_per_target(settings: Settings, tmp_path: Path) -> None:
    robot = WeComRobot()
    chans = tmp_path / "channels.yaml"
    chans.write_text(f"channels:\n  - {{id: group, kind: wecom, url: '{robot.robot_url}'}}\n"
                     f"  - {{id: down, kind: webhook, url: '{dead_url()}'}}\n", encoding="utf-8")
    svc = AlertService(replace(settings, alerts_channels_file=str(chans), notify_retry_first_s=5.0))
    svc.delivery.start()
    try:
        svc.engine.escalation.raised(sample_alert())  # type: ignore[union-attr]
        assert wait_until(lambda: svc.delivery.workers["group"].delivered == 1
                          and svc.delivery.workers["down"].failed_attempts == 1, 10)
        heartbeat.write(settings.data_path, "alerts", svc.snapshot())
        text = render(HeartbeatCollector(settings.data_path, {"alerts": add_alerts}))
    finally:
        svc.delivery.stop()
        svc.store.close()
        robot.close()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for fam in text_string_to_metric_families(text) for s in fam.samples}
    g = (("kind", "wecom"), ("target", "group"), ("worker", "alerts"))
    d = (("kind", "webhook"), ("target", "down"), ("worker", "alerts"))
    assert got[("sc_alerts_notify_delivered_total", g)] == 1
    assert got[("sc_alerts_notify_failed_attempts_total", d)] == 1
    assert got[("sc_alerts_notify_pending", d)] == 1 and got[("sc_alerts_notify_pending", g)] == 0
    assert got[("sc_alerts_config_errors", (("worker", "alerts"),))] == 0
