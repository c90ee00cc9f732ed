"""`devices commissioning`: per compound what reported, from a real InfluxDB's last points."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from openpyxl import load_workbook

import smartcommunity.cli as sc_cli
from core.influx import InfluxClient
from core.registry import ensure_registry, load_registry
from core.settings import Settings
from smartcommunity.services import free_port

H = 3600 * 1000


@pytest.fixture
def env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("SC_CONFIG", raising=False)
    monkeypatch.delenv("SC_REGISTRY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SC_DATA_DIR", settings.data_dir)
    monkeypatch.setenv("SC_INFLUX_URL", settings.influx_url)
    monkeypatch.setenv("SC_INFLUX_DB", settings.influx_db)
    ensure_registry(settings)
    return settings


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = sc_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_commissioning_counts_what_reported(env: Settings, influx: InfluxClient, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    devs = sorted((d for d in load_registry(env.registry_path).values() if d.compound_id == "YL-01"),
                  key=lambda d: d.device_id)
    gas = [d for d in devs if d.kind == "gas"]
    a, b, c = gas[0], gas[1], gas[2]
    now = int(time.time() * 1000)

    def tags(d) -> str:  # type: ignore[no-untyped-def]
        return f"device_id={d.device_id},community={d.community},kind={d.kind},compound_id={d.compound_id}"

    influx.write("\n".join([
        f"gas,{tags(a)} lel_pct=3.5,valve_open=true {now - H}",
        f"gas,{tags(a)} lel_pct=1.5 {now - 2 * H}",
        f"gas,{tags(b)} lel_pct=0.5 {now - 30 * H}",  # heard, but not in the last 24 h
        f"device_status,{tags(c)} state=\"offline\",online=false {now - 2 * H}",
        f"device_event,{tags(c)},event=low_battery detail=\"\" {now - 3 * H}",
        f"gas,device_id=G-NOT-REGISTERED,community=yanling,kind=gas,compound_id=YL-01 lel_pct=1 {now}",
    ]).encode())

    rc, out, err = run(capsys, "devices", "commissioning", "--json", "--xlsx", tmp_path / "验收.xlsx")
    assert rc == 0, err
    doc = orjson.loads(out)
    yl01 = next(s for s in doc["compounds"] if s["compound_id"] == "YL-01")
    assert yl01["registered"] == len(devs)
    assert yl01["reported_24h"] == 2 and yl01["never_reported"] == len(devs) - 3
    assert yl01["offline"] == 1 and yl01["low_battery"] == 1
    assert yl01["name"]  # the compound's name from the layers
    by_id = {d["device_id"]: d for d in doc["devices"]}
    assert "G-NOT-REGISTERED" not in by_id
    assert by_id[a.device_id]["last_values"] == {"lel_pct": 3.5, "valve_open": True}
    assert by_id[b.device_id]["reported_24h"] is False and by_id[b.device_id]["never_reported"] is False
    assert by_id[c.device_id]["status"] == "offline" and by_id[c.device_id]["low_battery_at"]
    assert len(doc["devices"]) == len(load_registry(env.registry_path))

    wb = load_workbook(tmp_path / "验收.xlsx")
    assert wb.sheetnames == ["验收汇总", "设备明细"]
    row = next(r for r in wb["验收汇总"].iter_rows(values_only=True) if r[1] == "YL-01")
    assert row[0] == "岩岭社区" and row[3:8] == (len(devs), 2, len(devs) - 3, 1, 1)

    rc, out, _ = run(capsys, "devices", "commissioning", "--community", "yanling")
    assert rc == 0
    assert "岩岭社区 (yanling)" in out and "工艺新村社区" not in out
    never = " ".join(ln for ln in out.splitlines() if "never reported:" in ln)
    assert all(d.device_id in never for d in devs if d not in (a, b, c))
    assert not any(d.device_id in never for d in (a, b, c))


def test_commissioning_before_anything_was_stored_and_with_influx_down(
    env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SC_INFLUX_DB", "never_created_db")
    rc, out, err = run(capsys, "devices", "commissioning", "--json")
    assert rc == 0, err
    doc = orjson.loads(out)
    assert doc["devices"] and all(d["never_reported"] for d in doc["devices"])

    monkeypatch.setenv("SC_INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    rc, _, err = run(capsys, "devices", "commissioning")
    assert rc == 1 and "InfluxDB does not answer" in err
