"""The supervisor re-checks the services every few seconds: it must not log "using ..." each time."""

from __future__ import annotations

import logging

import pytest

from core.settings import Settings
from smartcommunity.services import start_missing


def test_recheck_of_running_services_is_quiet(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="smartcommunity.services"):
        assert start_missing(settings) == []  # both answer: nothing started, said once at start
        said = [r.getMessage() for r in caplog.records]
        caplog.clear()
        for _ in range(3):
            assert start_missing(settings, announce=False) == []
        again = [r.getMessage() for r in caplog.records]
    assert any("using the MQTT broker" in m for m in said) and any("using InfluxDB" in m for m in said)
    assert again == []
