"""Shelving: recorded, not notified, listed, audited, back by itself at expiry — from the engine and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from alerts.engine import Engine
from alerts.notify import Escalation, Notifier, load_roster
from alerts.rules import load_ruleset
from alerts.shelving import ShelfError, parse_duration, shelve
from alerts.store import AlertStore, Store, open_store, store_path
from alerts.timeline import Event as Step
from core.contract import Alert
from tests.alerts.test_engine import GAS, POWER, Clock, tel
from tests.conftest import RunningAlerts, make_settings


def rig(tmp_path: Path, where: str | None = None) -> tuple[Engine, Clock, list[Alert], Store, Path]:
    clock = Clock()
    store = open_store(where or str(tmp_path / "a.sqlite"))
    published: list[Alert] = []
    outbox = tmp_path / "outbox.jsonl"
    esc = Escalation(load_roster(), Notifier(outbox))
    return Engine(load_ruleset(), store, published.append, 60, 0, clock=clock, escalation=esc), clock, published, \
        store, outbox


def notified(outbox: Path) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(x) for x in outbox.read_bytes().splitlines()] if outbox.exists() else []


def test_shelved_device_is_recorded_not_notified_and_comes_back(tmp_path: Path, store_url: str) -> None:
    # A power device (not life-safety: one person may shelve it); gas and red: tests/alerts/test_guard.py.
    engine, clock, published, store, outbox = rig(tmp_path, store_url)
    shelve(store, "device", POWER.device_id, 600, "供电所检修配电箱", "值班长王", now=clock.t)
    engine.tick()
    engine.handle(tel(POWER, clock, temp_c=80.0))
    engine.handle(tel(GAS, clock, lel_pct=30.0))  # not shelved: published as usual
    assert [a.rule for a in published] == ["gas_lel_high"]
    shelved = [a for a in store.list() if a.rule == "power_temp_high"]
    assert len(shelved) == 1 and shelved[0].state == "active"  # recorded, listed
    steps = store.timeline(shelved[0].alert_id)
    assert steps[-1].event == Step.SHELVED and steps[-1].actor == "值班长王" and steps[-1].note == "供电所检修配电箱"
    assert [n["alert_id"] for n in notified(outbox)] == [published[0].alert_id]
    clock.t += 300
    engine.handle(tel(POWER, clock, temp_c=81.0))
    engine.tick()  # still shelved: no escalation, nothing published
    assert not [a for a in published if a.rule == "power_temp_high"]
    clock.t += 301  # the shelf ran out: back by itself
    engine.tick()
    back = [a for a in published if a.rule == "power_temp_high"]
    assert len(back) == 1 and back[0].alert_id == shelved[0].alert_id
    assert store.timeline(shelved[0].alert_id)[-1].event == Step.UNSHELVED
    assert shelved[0].alert_id in [n["alert_id"] for n in notified(outbox)]
    store.close()


def test_shelving_a_rule_covers_alerts_already_open(tmp_path: Path, store_url: str) -> None:
    engine, clock, published, store, outbox = rig(tmp_path, store_url)
    engine.handle(tel(POWER, clock, temp_c=80.0))
    aid = published[0].alert_id
    shelve(store, "rule", "power_temp_high", 3600, "演练", "张三", now=clock.t)
    engine.tick()
    assert [s.event for s in store.timeline(aid)].count(Step.SHELVED) == 1
    clock.t += 3000  # past the orange escalation time: shelved, so no escalation
    engine.tick()
    engine.tick()
    assert [n["event"] for n in notified(outbox)] == ["raised"]
    assert [s.event for s in store.timeline(aid)].count(Step.SHELVED) == 1
    store.close()


def test_a_red_alert_is_never_silenced_by_a_shelf(tmp_path: Path, store_url: str) -> None:
    # Even a shelf written straight in the store (around the second-person check): red is told.
    engine, clock, published, store, outbox = rig(tmp_path, store_url)
    store.shelve("rule", "gas_lel_high", "演练", "张三", clock.t + 3600, "x", "y")
    engine.tick()
    engine.handle(tel(GAS, clock, lel_pct=30.0))
    assert [a.rule for a in published] == ["gas_lel_high"]
    assert [n["event"] for n in notified(outbox)] == ["raised"]
    assert store.timeline(published[0].alert_id)[-1].data["notified"] is True


def test_bad_shelves_are_refused() -> None:
    with pytest.raises(ShelfError):
        parse_duration("soon")
    with pytest.raises(ShelfError):
        parse_duration("30d")
    assert parse_duration("2h") == 7200


def test_cli_shelve_list_unshelve(tmp_path: Path) -> None:
    with RunningAlerts(make_settings(tmp_path / "var", mqtt_url="mqtt://127.0.0.1:9"), broker=False):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        env["SC_DATA_DIR"] = str(tmp_path / "var")

        def run(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "smartcommunity", "alerts", *a], env=env,
                                  capture_output=True, text=True, timeout=60)

        r = run("shelve", "--compound", "YL-01", "--for", "2h", "--reason", "检修", "--by", "李四")
        assert r.returncode == 0, r.stderr
        r = run("shelves", "--json")
        rows = json.loads(r.stdout)
        assert [(x["scope"], x["target"], x["by"], x["reason"]) for x in rows] == [
            ("compound", "YL-01", "李四", "检修")]
        assert run("shelve", "--rule", "x", "--for", "forever", "--reason", "r", "--by", "b").returncode == 2
        assert run("unshelve", str(rows[0]["shelf_id"]), "--by", "李四").returncode == 0
        assert json.loads(run("shelves", "--json").stdout) == []
        store = AlertStore(store_path(tmp_path / "var"))
        assert store.shelves()[0]["ended_by"] == "李四"
        store.close()
        r = run("shelve", "--rule", "power_voltage_low", "--for", "1h", "--reason", "线路改造", "--by", "李四")
        assert r.returncode == 0 and "power_voltage_low(电压偏低)" in r.stdout, r.stderr  # the rule by its title too
        assert "power_voltage_low(电压偏低)" in run("shelves").stdout
        listed = json.loads(run("rules", "--json").stdout)  # the names --rule takes, with the words staff read
        assert {"name": "fire_risk", "title": "火灾风险", "severity": "red",
                "description": "同一楼栋燃气浓度上升且断路器或线缆发热"} in listed
        assert "gas_lel_high           一级 燃气浓度超限：" in run("rules").stdout
        assert ("抑制 power_outage_mutes_its_effects: 「疑似停电」未解除时, 同一小区的"
                "「摄像头离线、设备无数据、供水压力偏低」(视频、供水设备) 记录, 不通知") in run("rules").stdout
