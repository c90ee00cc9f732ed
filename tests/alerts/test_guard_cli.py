"""The close guard from a terminal: `smartcommunity resolve` / `archive` refuse while the danger is
measured and take `--override --note`; `alerts shelve` of a gas rule needs `--approved-by` a second,
existing operator account."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from alerts.engine import Engine
from alerts.rules import load_rules
from alerts.store import AlertStore, store_path
from core.contract import Alert, Device
from core.staff import Accounts, accounts_path
from core.validation import Telemetry

GAS = Device("G-000001", "gas", "yanling", "YL-01", 10, 110.79, 32.65)


def cli(data: Path, *a: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_DATA_DIR=str(data), SC_MQTT_URL="mqtt://127.0.0.1:9")  # nothing listens: publish is best effort
    return subprocess.run([sys.executable, "-m", "smartcommunity", *a], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_resolve_and_archive_refused_while_live_then_overridden(tmp_path: Path) -> None:
    data = tmp_path / "var"
    store = AlertStore(store_path(data))
    published: list[Alert] = []
    engine = Engine(load_rules(), store, published.append, holdoff_s=60, update_min_s=0)
    engine.handle(Telemetry(GAS, int(time.time() * 1000), None, {"lel_pct": 62.0}))
    engine.tick()
    aid = published[-1].alert_id

    r = cli(data, "resolve", aid, "--by", "张三", "--note", "处置结束")
    assert r.returncode == 1 and "62.0 %LEL" in r.stderr and "仍在报警" in r.stderr
    assert store.get(aid).state == "active"  # type: ignore[union-attr]
    r = cli(data, "resolve", aid, "--by", "张三", "--override", "--note", "燃气公司已关总阀")
    assert r.returncode == 0, r.stderr
    assert "OVER the live reading 62.0 %LEL" in r.stdout
    assert store.timeline(aid)[-1].data["override"] is True

    r = cli(data, "archive", aid, "--cause", "燃气管道/阀门泄漏", "--by", "李四")
    assert r.returncode == 1 and "62.0" in r.stderr
    r = cli(data, "archive", aid, "--cause", "燃气管道/阀门泄漏", "--by", "李四", "--override", "--note", "复测 0")
    assert r.returncode == 0, r.stderr
    store.close()


def test_cli_shelving_a_gas_rule_needs_a_second_existing_operator(tmp_path: Path) -> None:
    data = tmp_path / "var"
    Accounts(accounts_path(data)).add("lisi", "李四", "a long password", "operator")
    Accounts(accounts_path(data)).add("wall", "大屏", "a long password", "viewer")
    base = ("alerts", "shelve", "--rule", "gas_lel_high", "--for", "1h", "--reason", "燃气公司抢修", "--by")
    r = cli(data, *base, "zhangsan")
    assert r.returncode == 2 and "--approved-by" in r.stderr
    r = cli(data, *base, "zhangsan", "--approved-by", "wall")  # a viewer cannot approve (others: test_guard.py)
    assert r.returncode == 2 and "operator or admin" in r.stderr, r.stderr
    r = cli(data, *base, "zhangsan", "--approved-by", "lisi")
    assert r.returncode == 0, r.stderr
    assert "LIFE-SAFETY, approved by lisi" in r.stdout
    r = cli(data, "alerts", "shelves")
    assert "生命安全·批准 lisi" in r.stdout
