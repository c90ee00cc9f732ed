"""A serious alert carries its nearest resources (from the real sample layers, through the real engine)
and its message names the ones that matter to its kind, with distances."""

from __future__ import annotations

from pathlib import Path

import pyproj
import pytest

from alerts.context import Surroundings, distance_text, resources_line
from alerts.engine import Engine
from alerts.message import Places, compose
from alerts.rules import load_rules
from alerts.store import AlertStore
from core.contract import Alert, Device
from core.registry import bundled_registry_path, load_registry
from core.validation import Telemetry
from geodata.layers import Layers, load_bundled_layers
from geodata.spatial import spatial_index
from tests.alerts.channels.conftest import sample_alert

GEOD = pyproj.Geod(ellps="GRS80")  # CGCS2000's ellipsoid: the hand computation, independent of the metric grid


@pytest.fixture(scope="module")
def layers() -> Layers:
    return load_bundled_layers()


def raise_on(dev: Device, layers: Layers, tmp_path: Path, **metrics: float | bool) -> Alert:
    store = AlertStore(tmp_path / "a.sqlite")
    published: list[Alert] = []
    around = Surroundings(200, spatial_index(layers)).around
    engine = Engine(load_rules(), store, published.append, 60, 0, clock=lambda: 1_000_000.0, surroundings=around)
    engine.handle(Telemetry(dev, 1_000_000_000, None, dict(metrics)))
    alert = published[0]
    assert store.get(alert.alert_id).nearby == alert.nearby  # type: ignore[union-attr]  # stored with it
    store.close()
    return alert


def hand_m(dev: Device, layers: Layers, resource_id: str) -> float:
    res = layers.resources.set_index("resource_id")
    g = res.geometry[resource_id]
    return float(GEOD.inv(dev.lon, dev.lat, g.x, g.y)[2])


def test_distance_text() -> None:
    assert [distance_text(m) for m in (0, 35.4, 999.4, 999.6, 1234, 12_345)] == \
        ["0 米", "35 米", "999 米", "1.0 公里", "1.2 公里", "12.3 公里"]


def test_a_gas_alert_names_the_valve_that_closes_its_compound_and_the_gas_team(layers: Layers,
                                                                               tmp_path: Path) -> None:
    reg = load_registry(bundled_registry_path())
    dev = next(d for d in reg.values() if d.kind == "gas" and d.compound_id == "YL-01" and d.extra.get("building_id"))
    alert = raise_on(dev, layers, tmp_path, lel_pct=60.0)
    assert alert.severity == "red"
    res = {r["need"]: r for r in alert.nearby["resources"]}  # type: ignore[index]
    valve, team = res["gas_valve"], res["gas_team"]
    assert valve["id"] == "GV-YL-01" and valve["closes"] == ["半山尚小区"] and valve["closes_here"]
    assert team["id"] == "T-GAS" and team["phone"]
    assert abs(valve["distance_m"] - hand_m(dev, layers, "GV-YL-01")) <= 1
    assert abs(team["distance_m"] - hand_m(dev, layers, "T-GAS")) <= 1
    text = compose(alert, "raised", Places(reg.get).of(alert.community, alert.compound_id, alert.device_id)).plain()
    line = (f"最近燃气阀门: {distance_text(valve['distance_m'])} ({valve['name']}, 关闭 半山尚小区); "
            f"燃气抢修队: {distance_text(team['distance_m'])}")
    assert line in text, text
    assert valve["name"].startswith("半山尚小区 ") and valve["name"].endswith("侧阀门")
    assert "供水阀门" not in text and "AED" not in text  # only what a gas leak needs
    assert text.count("最近") == 1
    # The all-clear needs no valve.
    assert "燃气阀门" not in compose(alert, "resolved", Places(reg.get).of(alert.community, None, None)).plain()


def test_a_water_alert_names_a_water_valve_and_team(layers: Layers, tmp_path: Path) -> None:
    reg = load_registry(bundled_registry_path())
    dev = next(d for d in reg.values() if d.kind == "water" and d.compound_id.startswith("YH-"))
    alert = raise_on(dev, layers, tmp_path, leak=True)
    assert alert.severity == "orange"
    res = {r["need"]: r for r in alert.nearby["resources"]}  # type: ignore[index]
    assert res["water_valve"]["id"].startswith("WV-")
    assert abs(res["water_valve"]["distance_m"] - hand_m(dev, layers, res["water_valve"]["id"])) <= 1
    text = compose(alert, "raised", Places(reg.get).of(alert.community, alert.compound_id, alert.device_id)).plain()
    assert f"最近供水阀门: {distance_text(res['water_valve']['distance_m'])} ({res['water_valve']['name']}" in text
    assert "供水抢修队: " in text and "燃气阀门" not in text


def test_no_resources_no_line() -> None:
    assert resources_line(None, "gas") == ""
    assert resources_line({"resources": []}, "gas") == ""
    # An alert stored before resources existed reads as before.
    a = sample_alert()
    assert "最近" not in compose(a, "raised", Places().of(a.community, a.compound_id, a.device_id)).plain()
    # A camera needs none of them.
    assert resources_line({"resources": [{"need": "gas_valve", "label": "燃气阀门", "distance_m": 5}]}, "camera") == ""
