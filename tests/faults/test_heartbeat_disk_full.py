"""Heartbeats on a full disk (a real, filled tmpfs): never an exception; an existing beat is written
over in place and says `disk_full`, so health still sees the part alive and why it cannot write."""

from __future__ import annotations

import time

from core import heartbeat
from tests.faults.conftest import SmallDisk


def test_heartbeat_on_a_full_disk(small_disk: SmallDisk) -> None:
    data = small_disk.root / "var"
    assert heartbeat.write(data, "alerts", {"counters": {"received": 1}})
    small_disk.fill()
    time.sleep(0.05)
    assert heartbeat.write(data, "alerts", {"counters": {"received": 2}, "queue": 0})  # in place
    beat = heartbeat.read_all(data, "alerts")[0]
    assert beat["fresh"] and beat["disk_full"] is True and beat["counters"] == {"received": 2}
    assert heartbeat.cannot_write(data) == ["alerts"]
    # A part with no beat yet: nothing to write over. It says so and goes on; it does not raise.
    assert heartbeat.write(data, "ingest-0", {"counters": {}}) is False
    assert not list((data / "run").glob(".*.tmp"))  # no half-written temporary file left behind

    small_disk.free()
    assert heartbeat.write(data, "alerts", {"counters": {"received": 3}})
    beat = heartbeat.read_all(data, "alerts")[0]
    assert "disk_full" not in beat and beat["counters"] == {"received": 3}
    assert heartbeat.cannot_write(data) == []
