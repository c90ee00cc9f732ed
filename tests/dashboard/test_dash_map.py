"""The one-map figure: offline-safe (no internet URL anywhere), labels drawn last, live colouring."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.contract import COMMUNITIES, Alert
from dashboard.app import create_app
from dashboard.geo import MapData
from dashboard.live import compute_live
from dashboard.mapfig import CODE_COLOR, T_COMPOUNDS, T_DEVICES, T_LABELS, live_layers, registry_patch
from tests.conftest import make_settings
from tests.dashboard.pagehelp import page_layout


def find_figure(node: Any) -> dict[str, Any] | None:
    if isinstance(node, dict):
        if node.get("type") == "Graph" and node.get("props", {}).get("id") == "onemap":
            fig: dict[str, Any] = node["props"]["figure"]
            return fig
        for v in node.values():
            found = find_figure(v)
            if found:
                return found
    elif isinstance(node, list):
        for v in node:
            found = find_figure(v)
            if found:
                return found
    return None


@pytest.fixture
def layout_figure(tmp_path: Path) -> dict[str, Any]:
    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(s)
    client = app.server.test_client()
    fig = find_figure(page_layout(client, "/"))
    assert fig is not None
    app.server.config["SC_DASHBOARD"].close()
    return fig


def test_figure_needs_nothing_from_the_internet(layout_figure: dict[str, Any]) -> None:
    text = json.dumps(layout_figure, ensure_ascii=False)
    urls = set(re.findall(r"https?://[^\"' ]+", text))
    assert urls == {"http://127.0.0.1:8123/map/style.json"}
    for layer in layout_figure["layout"]["map"]["layers"]:
        if layer["type"] == "symbol":
            assert layer["symbol"]["icon"] == ""  # a named icon would be fetched from a CDN
    for trace in layout_figure["data"]:
        assert trace.get("marker", {}).get("symbol") in (None, "circle")


def test_community_labels_last_and_layers_present(layout_figure: dict[str, Any]) -> None:
    data = layout_figure["data"]
    assert len(data) == T_LABELS + 1
    labels = data[T_LABELS]
    assert labels["mode"] == "text" and sorted(labels["text"]) == sorted(COMMUNITIES.values())
    assert data[T_COMPOUNDS]["type"] == "choroplethmap" and len(data[T_COMPOUNDS]["locations"]) >= 4
    assert len(data[T_DEVICES]["lon"]) > 100
    kinds = [(layer["type"], len(layer["source"]["features"])) for layer in layout_figure["layout"]["map"]["layers"]]
    assert all(n > 0 for _, n in kinds) and {"fill", "line", "symbol"} <= {k for k, _ in kinds}
    assert layout_figure["layout"]["uirevision"]


def test_local_style_and_glyphs(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9", influx_url="http://127.0.0.1:9")
    app = create_app(s)
    c = app.server.test_client()
    style = c.get("/map/style.json", base_url="http://127.0.0.1:8123/").json
    assert style["version"] == 8 and style["sources"] == {}
    assert style["glyphs"].startswith("http://127.0.0.1:8123/map/glyphs/")
    assert c.get("/map/glyphs/Open%20Sans%20Regular/0-255.pbf").status_code == 404
    for page in ("/", "/wall"):
        r = c.get(page)
        assert r.status_code == 200 and "车城路街道 综合一张图" in r.data.decode()
        assert "https://" not in r.data.decode()  # every script and stylesheet is served locally
    app.server.config["SC_DASHBOARD"].close()


def test_live_colours_compound_device_and_halo(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    md = MapData(s)
    base, reg = md.layers(), md.registry()
    dev = next(d for d in reg.values() if d.compound_id in base.compound_ids)
    other = next(d for d in reg.values() if d.compound_id in base.compound_ids and d.compound_id != dev.compound_id)
    t = "2026-11-25T03:12:00.000Z"

    def alert(d: Any, sev: str, state: str, started: str = t) -> Alert:
        return Alert(
            f"a-{d.device_id}-{sev}",
            "r",
            sev,
            state,
            d.community,
            d.compound_id,
            d.device_id,
            d.kind,
            None,
            None,
            None,
            None,
            None,
            started,
            started,
            "测试",
        )

    live = compute_live(
        [
            alert(dev, "yellow", "active"),
            alert(dev, "red", "active", "2026-11-25T01:00:00.000Z"),
            alert(other, "blue", "acknowledged"),
        ],
        base,
        reg,
        "v1",
    )
    assert [a.severity for a in live.alerts] == ["red", "yellow", "blue"]  # worst first
    assert live.compound_codes[base.compound_ids.index(dev.compound_id)] == 4
    assert live.compound_codes[base.compound_ids.index(other.compound_id)] == 1
    assert live.code_of(dev.device_id) == 4
    assert len(live.device_sparse) == 2
    assert len(live.halos) == 3 and (live.halos[-1].lon, live.halos[-1].lat) == (dev.lon, dev.lat)
    assert [h.severity for h in live.halos] == ["blue", "yellow", "red"]  # the worst drawn last, on top

    drawn = live_layers(live, reg, base)
    assert drawn["risk"] == {dev.compound_id: CODE_COLOR[4], other.compound_id: CODE_COLOR[1]}
    # Two alerts on one device are one dot showing the worst, with the count and the other in its label;
    # the acknowledged one elsewhere does not pulse; the worst spot is last (on top).
    assert [(r[3], r[4], r[5], r[8]) for r in drawn["alerts"]] == [(0, "四级", "已确认", 1), (1, "一级", "未处置", 2)]
    assert drawn["alerts"][-1][7] == f"a-{dev.device_id}-red"
    assert drawn["alerts"][-1][9] == ["三级 未处置 测试"]
    assert [r[3] for r in drawn["devices"]] == [other.device_id, dev.device_id]
    assert [r[2] for r in drawn["devices"]] == [CODE_COLOR[1], CODE_COLOR[4]]
    assert len(json.dumps(drawn)) < 3000  # what a tick sends: a few hundred bytes per alert
    # A re-registered device list resends the device trace only.
    ops = {tuple(op["location"]) for op in registry_patch(reg, base).to_plotly_json()["operations"]}
    assert ops and all(loc[:2] == ("data", T_DEVICES) for loc in ops)

    quiet = compute_live([], base, reg, "v1")
    assert not any(quiet.compound_codes) and quiet.signature != live.signature
