"""The close guard from a terminal: `smartcommunity resolve` / `archive` refuse while the danger is
measured and take `--override --note`; `alerts shelve` of a gas rule needs `--approved-by` a second,
existing operator account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alerts.store import AlertStore, store_path
from core.staff import Accounts, accounts_path
from tests.conftest import RunningAlerts, feed, make_settings, wait_until


def cli(data: Path, *a: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_DATA_DIR=str(data), SC_MQTT_URL="mqtt://127.0.0.1:9")  # nothing listens: publish is best effort
    return subprocess.run([sys.executable, "-m", "smartcommunity", *a], env=env, capture_output=True, text=True,
                          timeout=120)


def gas_reading(svc: Any, lel: float) -> str:
    """A red reading put into the running service's inbox, as its MQTT client does (validated, handled
    on the engine thread); the id of the alert it raised."""
    dev = sorted((d for d in svc.registry.current().values() if d.kind == "gas"), key=lambda d: d.device_id)[0]
    feed(svc, dev, {"lel_pct": lel})
    raised = wait_until(lambda: svc.store.list(device_id=dev.device_id), timeout=30)  # the first loads the map
    assert raised, "the red reading raised nothing"
    return str(raised[0].alert_id)


def test_cli_resolve_and_archive_refused_while_live_then_overridden(tmp_path: Path) -> None:
    data = tmp_path / "var"
    with RunningAlerts(make_settings(data, mqtt_url="mqtt://127.0.0.1:9"), broker=False) as svc:
        aid = gas_reading(svc, 62.0)
        store = svc.store

        r = cli(data, "resolve", aid, "--by", "张三", "--note", "处置结束")
        assert r.returncode == 1 and "62.0 %LEL" in r.stderr and "仍在报警" in r.stderr
        assert store.get(aid).state == "active"  # type: ignore[union-attr]
        r = cli(data, "resolve", aid, "--by", "张三", "--override", "--note", "燃气公司已关总阀")
        assert r.returncode == 0, r.stderr
        assert "OVER the live reading 62.0" in r.stdout
        assert store.timeline(aid)[-1].data["override"] is True

        r = cli(data, "archive", aid, "--cause", "燃气管道/阀门泄漏", "--by", "李四")
        assert r.returncode == 1 and "62.0" in r.stderr
        r = cli(data, "archive", aid, "--cause", "燃气管道/阀门泄漏", "--by", "李四", "--override", "--note", "复测 0")
        assert r.returncode == 0, r.stderr


def test_cli_with_the_alert_service_stopped_says_so_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    with RunningAlerts(make_settings(data, mqtt_url="mqtt://127.0.0.1:9"), broker=False) as svc:
        aid = gas_reading(svc, 62.0)
    r = cli(data, "resolve", aid, "--by", "张三", "--override", "--note", "燃气公司已关总阀")
    assert r.returncode == 3 and "alerts service is not running" in r.stderr
    store = AlertStore(store_path(data))
    assert store.get(aid).state == "active"  # type: ignore[union-attr]
    store.close()


def test_cli_shelving_a_gas_rule_needs_a_second_existing_operator(tmp_path: Path) -> None:
    data = tmp_path / "var"
    with RunningAlerts(make_settings(data, mqtt_url="mqtt://127.0.0.1:9"), broker=False):
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
