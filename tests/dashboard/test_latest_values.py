"""A device's tiles keep the last value of each metric, from the real InfluxDB: a newer message that
lacks a metric does not blank it; a database that does not answer reads as words, not a traceback."""

from __future__ import annotations

import time

import pytest

from core.influx import InfluxClient
from dashboard import trends


def test_each_metric_keeps_its_last_value(influx: InfluxClient) -> None:
    now = int(time.time() * 1000)
    tags = "device_id=G-000001,community=yanling,kind=gas,compound_id=YL-01"
    influx.write(f"gas,{tags} lel_pct=3.5,co_ppm=12 {now - 20_000}\n"
                 f"gas,{tags} valve_open=true {now - 10_000}\n".encode())
    got = trends.latest(influx, "gas", "device_id", "G-000001")["G-000001"]
    assert got["lel_pct"] == 3.5 and got["co_ppm"] == 12 and got["valve_open"] is True
    assert got["time"] == now - 10_000  # the newest message, for "最新数据"
    assert "pressure_kpa" not in got


def test_a_database_that_does_not_answer_reads_as_words() -> None:
    client = InfluxClient("http://127.0.0.1:9", "nowhere")
    with pytest.raises(trends.TrendError) as err:
        trends.latest(client, "gas", "device_id", "G-000001")
    assert str(err.value) == trends.DB_DOWN and "http" not in str(err.value)
    client.close()
