"""The dashboard's live state, trends and freshness against the real broker, InfluxDB and store."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from dash import no_update

from alerts.store import AlertStore, store_path
from core import heartbeat
from core.contract import Alert, Device
from core.influx import InfluxClient
from core.settings import Settings
from core.timebase import iso, now_iso
from dashboard import mapfig, trends
from dashboard.geo import MapData
from dashboard.health import Freshness
from dashboard.live import OFFLINE_CODE, compute_live
from dashboard.state import LiveState
from ingest.retention import ensure_retention
from tests.conftest import clear_retained_alerts, make_settings, wait_until


def gas_device(settings: Settings, community: str = "lanshanjun") -> Device:
    md = MapData(settings)
    return next(d for d in md.registry().values() if d.community == community and d.kind == "gas")


def make_alert(dev: Device, severity: str = "red", state: str = "active", rule: str = "gas_lel_high") -> Alert:
    now = now_iso()
    return Alert(f"a-{uuid.uuid4().hex[:12]}", rule, severity, state, dev.community, dev.compound_id, dev.device_id,
                 dev.kind, "lel_pct", 31.0, 25.0, None, None, now, now, "燃气浓度 31.0 %LEL ≥ 25 %LEL")


def test_live_state_hears_alerts_and_status_on_mqtt(settings: Settings, publisher: mqtt.Client) -> None:
    clear_retained_alerts(settings)  # other tests' alerts on the shared broker are not this test's
    state = LiveState(settings, MapData(settings))
    try:
        assert wait_until(lambda: state.feeds.mqtt_connected, 10)
        dev = gas_device(settings)
        a = make_alert(dev)
        v0 = state.version
        publisher.publish(f"sc/alerts/{dev.community}/{a.alert_id}", orjson.dumps(a.as_json()), qos=1, retain=True)
        assert wait_until(lambda: state.get(a.alert_id) is not None, 5), state.feeds
        assert state.version > v0
        _base, _reg, live = state.view()
        assert [x.alert_id for x in live.alerts] == [a.alert_id]
        assert live.code_of(dev.device_id) == 4

        # Garbage on the bus is ignored and the feed goes on.
        publisher.publish(f"sc/alerts/{dev.community}/junk", b"\xff{not json", qos=1)
        publisher.publish(f"sc/{dev.community}/gas/{dev.device_id}/status", b'{"state": 7', qos=1)
        other = next(d for d in MapData(settings).registry().values() if d.kind == "water")
        publisher.publish(f"sc/{other.community}/water/{other.device_id}/status",
                          orjson.dumps({"ts": int(time.time() * 1000), "state": "offline"}), qos=1, retain=True)
        assert wait_until(lambda: other.device_id in state.offline(), 5)
        live = state.view()[2]
        assert live.code_of(other.device_id) == OFFLINE_CODE
        assert other.device_id in live.offline_ids

        # Resolved by hand elsewhere: it leaves the open list and stays, faded, among the recent.
        done = Alert(**{**a.as_json(), "state": "resolved", "resolved_at": now_iso(), "updated_at": now_iso(),
                        "resolved_by": "张三"})
        publisher.publish(f"sc/alerts/{dev.community}/{a.alert_id}", orjson.dumps(done.as_json()), qos=1)
        assert wait_until(lambda: (state.get(a.alert_id) or a).state == "resolved", 5)
        state.reload()  # a re-read of the store (which never had it) keeps what was heard on MQTT
        assert (state.get(a.alert_id) or a).state == "resolved"
        live = state.view()[2]
        assert live.alerts == [] and [x.resolved_by for x in live.resolved] == ["张三"]
        assert [h.alert_id for h in live.resolved_halos] == [a.alert_id]
        publisher.publish(f"sc/{other.community}/water/{other.device_id}/status",
                          orjson.dumps({"ts": int(time.time() * 1000), "state": "online"}), qos=1, retain=True)
        assert wait_until(lambda: other.device_id not in state.offline(), 5)
    finally:
        state.close()


def test_live_state_sees_store_writes_without_a_broker(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    state = LiveState(s, MapData(s))
    store = AlertStore(store_path(s.data_path))  # another writer, like the alert engine
    try:
        dev = gas_device(s)
        a = make_alert(dev, severity="orange")
        store.insert(a, dev.device_id)
        assert wait_until(lambda: state.get(a.alert_id) is not None, 5)
        store.acknowledge(a.alert_id, "李四", None, now_iso())
        assert wait_until(lambda: (state.get(a.alert_id) or a).state == "acknowledged", 5)
        assert state.get(a.alert_id).acked_by == "李四"  # type: ignore[union-attr]
    finally:
        store.close()
        state.close()


def test_a_refresh_sends_only_the_devices_that_changed(tmp_path: Path) -> None:
    """100,000 registered devices; one alert more: the tick carries the live layers (the devices in alert,
    the new one among them), never the 100,000, and the figure is not touched."""
    s = make_settings(tmp_path / "var")
    base = MapData(s).layers()
    devs = {f"D-{i:06d}": Device(f"D-{i:06d}", "gas", "yanling", base.compound_ids[i % len(base.compound_ids)], 10,
                                 110.78 + (i % 300) * 1e-5, 32.64 + (i // 300) * 1e-5) for i in range(100_000)}
    first = make_alert(devs["D-000010"])
    second = make_alert(devs["D-054321"], severity="yellow")
    new = compute_live([first, second], base, devs, "v", version=2)
    t0 = time.perf_counter()
    drawn = mapfig.live_layers(new, devs, base)
    took = time.perf_counter() - t0
    assert [r[3] for r in drawn["devices"]] == ["D-054321", "D-000010"]  # the worst last, on top
    assert [r[2] for r in drawn["devices"]] == [mapfig.CODE_COLOR[2], mapfig.CODE_COLOR[4]]
    assert drawn["devices"][0][:2] == [round(devs["D-054321"].lon, mapfig.COORD_DIGITS),
                                      round(devs["D-054321"].lat, mapfig.COORD_DIGITS)]
    assert [r[7] for r in drawn["alerts"]] == [second.alert_id, first.alert_id]
    assert len(orjson.dumps(drawn)) < 20_000
    print(f"live layers with 100k devices: {len(orjson.dumps(drawn))} bytes, {took * 1000:.1f} ms")


def test_a_tick_sends_the_live_layers_only_when_something_drawn_changed(tmp_path: Path) -> None:
    """Through the map's refresh: an unchanged version sends nothing; a new alert sends the live layers
    and no figure; a new value on the same open alert (nothing drawn changed) sends no layers."""
    from dashboard import mapview
    from dashboard.app import create_app

    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(s, live_mqtt=False)
    d = app.server.config["SC_DASHBOARD"]
    try:
        base, reg, live = d.state.view()
        sig = {"v": live.version, "reg": live.registry_version, "base": base.key}
        with app.server.test_request_context("/"):
            assert mapview.refresh_map(d, sig) == (no_update, no_update, no_update)
            dev = next(iter(reg.values()))
            a = make_alert(dev)
            d.state.apply(a)
            fig, layers, sig2 = mapview.refresh_map(d, sig)
            assert fig is no_update and [r[7] for r in layers["alerts"]] == [a.alert_id]
            d.state.apply(dataclasses.replace(a, value=(a.value or 0) + 1, updated_at=a.updated_at + "1"))
            fig, layers, sig3 = mapview.refresh_map(d, sig2)
            assert fig is no_update and layers is no_update and sig3["v"] > sig2["v"]
    finally:
        d.close()


def test_a_registry_past_the_cap_is_one_marker_per_compound(tmp_path: Path) -> None:
    """100,000 devices: the figure carries one marker per compound (with its count) and stays under
    1 MB; a device in alert is still drawn on its own, in the live layers."""
    s = make_settings(tmp_path / "var")
    base = MapData(s).layers()
    devs = {f"D-{i:06d}": Device(f"D-{i:06d}", "gas" if i % 3 else "power", "yanling",
                                 base.compound_ids[i % len(base.compound_ids)], 10,
                                 110.78 + (i % 300) * 1e-5, 32.64 + (i // 300) * 1e-5) for i in range(100_000)}
    live = compute_live([make_alert(devs["D-054321"])], base, devs, "v", version=1)
    fig = mapfig.build_figure(base, devs, "http://127.0.0.1/map/style.json")
    dev_trace = fig["data"][mapfig.T_DEVICES]
    assert dev_trace["meta"] == {"agg": True, "n": 100_000}
    assert len(dev_trace["lon"]) == len({d.compound_id for d in devs.values()}) == len(base.compound_ids)
    first_cid = base.compound_ids[0]
    row = next(c for c in dev_trace["customdata"] if c[0] == first_cid)
    n_first = sum(1 for d in devs.values() if d.compound_id == first_cid)
    assert f"设备 {n_first} 台" in row[1]
    assert [r[3] for r in mapfig.live_layers(live, devs, base)["devices"]] == ["D-054321"]
    assert len(orjson.dumps(fig)) < 1_000_000


def test_devices_in_alert_or_offline_are_capped_worst_kept(tmp_path: Path) -> None:
    """A flood of offline devices does not push an alert off the map: alerts are kept, grey ones capped."""
    s = make_settings(tmp_path / "var")
    base = MapData(s).layers()
    devs = {f"D-{i:06d}": Device(f"D-{i:06d}", "gas", "yanling", base.compound_ids[0], 10, 110.78, 32.64)
            for i in range(mapfig.STATE_CAP + 500)}
    live = compute_live([make_alert(devs["D-000007"])], base, devs, "v",
                        offline=frozenset(devs) - {"D-000007"}, version=1)
    rows = mapfig.live_layers(live, devs, base)["devices"]
    assert len(rows) == mapfig.STATE_CAP
    assert rows[-1][3] == "D-000007" and rows[-1][2] == mapfig.CODE_COLOR[4]


def write_gas(influx: InfluxClient, dev: Device, start_s: float, n: int, step_s: float, lel: Any) -> None:
    lines = []
    for i in range(n):
        t = int((start_s + i * step_s) * 1000)
        lines.append(f"gas,device_id={dev.device_id},community={dev.community},kind=gas,"
                     f"compound_id={dev.compound_id} lel_pct={float(lel(i))},co_ppm=1.0 {t}")
    for k in range(0, len(lines), 5000):
        influx.write("\n".join(lines[k:k + 5000]).encode())


def test_trends_raw_points_and_rollups_downsampled_on_the_server(settings: Settings, influx: InfluxClient) -> None:
    dev = gas_device(settings)
    now = time.time()
    write_gas(influx, dev, now - 7200, 7200, 1.0, lambda i: i % 100)  # 2 h of 1 s points
    got = trends.series(influx, "gas", ["lel_pct", "co_ppm"], "device_id", dev.device_id, now - 3600, now)
    lel, lel_dev = got[0], dev.device_id
    assert lel.source == "autogen" and 0 < len(lel.y) <= trends.MAX_POINTS
    assert lel.step_s == 2 and max(lel.hi) == 99.0 and min(lel.lo) == 0.0  # type: ignore[type-var]
    assert got[1].y and set(got[1].y) == {1.0}

    # 7 days: read from the 1-minute rollups (written here the way the continuous query writes them),
    # for a device without raw points (so the real continuous query adds nothing to its series).
    assert ensure_retention(influx, 30, 400)
    reg = MapData(settings).registry()
    dev = next(d for d in reg.values() if d.kind == "gas" and d.device_id != dev.device_id)
    lines = []
    for i in range(7 * 1440):
        t = int((now - 7 * 86400 + i * 60) * 1000)
        lines.append(f"gas,device_id={dev.device_id},compound_id={dev.compound_id} mean_lel_pct=5,min_lel_pct=1,"
                     f"max_lel_pct=9 {t}")
    rp = InfluxClient(settings.influx_url, settings.influx_db)
    for k in range(0, len(lines), 5000):
        rp._request("POST", "/write", params={"db": settings.influx_db, "rp": "rollup_1m", "precision": "ms"},
                    data="\n".join(lines[k:k + 5000]).encode())
    rp.close()
    week = trends.series(influx, "gas", ["lel_pct"], "device_id", dev.device_id, now - 7 * 86400, now)[0]
    assert week.source == "rollup_1m" and 0 < len(week.y) <= trends.MAX_POINTS and week.step_s >= 300
    assert set(week.y) == {5.0} and max(week.hi) == 9.0  # type: ignore[type-var]

    # A device without rollups still gets its week, from raw points grouped on the server.
    other = next(d for d in reg.values() if d.kind == "gas" and d.device_id not in (dev.device_id, lel_dev))
    write_gas(influx, other, now - 3 * 86400, 300, 600, lambda i: 3)
    week2 = trends.series(influx, "gas", ["lel_pct"], "device_id", other.device_id, now - 7 * 86400, now)[0]
    assert week2.source == "autogen" and week2.y and set(week2.y) == {3.0}

    fig = trends.figure(lel, [make_alert(dev)], now - 3600, now)
    assert any(t.get("name") == "告警" for t in fig["data"])  # the alert marked on the time axis
    assert len(orjson.dumps(fig)) < 1_000_000

    down = InfluxClient("http://127.0.0.1:9", settings.influx_db, timeout_s=1)
    with pytest.raises(trends.TrendError):
        trends.series(down, "gas", ["lel_pct"], "device_id", dev.device_id, now - 3600, now)


def test_freshness_from_heartbeats_and_data_age(tmp_path: Path) -> None:
    data = tmp_path / "var"
    f = Freshness(data, stale_after_s=1.0)
    assert f.check()["reasons"] == ["接入服务无心跳", "告警引擎无心跳"]
    heartbeat.write(data, "alerts", {"open_alerts": 0})
    heartbeat.write(data, "ingest-0", {"counters": {"received": 10}, "mqtt": "ok", "influxdb": "ok"})
    assert f.check() == {"stale": False, "reasons": [], "data_age_s": f.check()["data_age_s"]}
    heartbeat.write(data, "ingest-0", {"counters": {"received": 20}, "mqtt": "ok", "influxdb": "ok"})
    assert not f.check(now=time.time())["stale"]
    later = f.check(now=time.time() + 5)  # the counter has not moved for 5 s
    assert later["stale"] and later["reasons"] == ["5 秒无新数据"]
    heartbeat.write(data, "ingest-0", {"counters": {"received": 21}, "mqtt": "down", "influxdb": "ok"})
    assert f.check()["reasons"] == ["接入服务连不上消息总线"]
    heartbeat.write(data, "ingest-0", {"counters": {"received": 21}, "stopped": True})
    assert f.check()["reasons"] == ["接入服务无心跳"]
    assert iso(0).endswith("Z")


def test_values_keep_their_unit_whole_or_not() -> None:
    """A reading of exactly 31 %LEL is shown as such, not as a bare 31 (seen on a compound page)."""
    assert trends.fmt_value(31, "%LEL") == "31 %LEL"
    assert trends.fmt_value(0.17, "%LEL") == "0.17 %LEL"
    assert trends.fmt_value(True, "bool") == "是"
    assert trends.fmt_value(None, "%LEL") == ""
