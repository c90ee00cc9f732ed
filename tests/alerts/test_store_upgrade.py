"""Upgrades: an alert store made by every earlier schema's own code opens with today's AlertStore,
its alerts and their timelines as they were.

The earlier releases are this repository's history (there are no tags): each commit of main (its
first-parent line: what ran, not a branch's work in progress) that changed alerts/migrations/, and
the one before migrations existed. Their `alerts/` and `core/` are
taken with `git archive` into a temporary folder, and a subprocess with only that folder on
PYTHONPATH makes the store there, raises an alert, acknowledges it, and raises a second one.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import orjson
import pytest

from alerts.migrations import LATEST
from alerts.store import AlertStore
from core import timebase

ROOT = Path(__file__).resolve().parents[2]

OLD_SIDE = r"""
import sqlite3, sys
from pathlib import Path
import orjson
from core.contract import Alert
from alerts.store import AlertStore

path, t0, t1 = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def alert(alert_id, device, value):
    return Alert(alert_id=alert_id, rule="gas_leak", severity="red", state="active", community="lanshanjun",
                 compound_id="LSJ-01", device_id=device, kind="gas", metric="lel_pct", value=value,
                 threshold=20.0, lon=110.7801, lat=32.6502, started_at=t0, updated_at=t0, message="燃气泄漏")
store = AlertStore(path)
store.insert(alert("old-1", "G-000101", 31.5), "sc/lanshanjun/gas/G-000101")
store.acknowledge("old-1", "王五", "已到场", t1)
store.insert(alert("old-2", "G-000102", 24.0), "sc/lanshanjun/gas/G-000102")
out = {}
for aid in ("old-1", "old-2"):
    a = store.get(aid)
    steps = store.timeline(aid) if hasattr(store, "timeline") else []
    out[aid] = {"state": a.state, "acked_by": a.acked_by, "note": a.note, "value": a.value,
                "updated_at": a.updated_at, "steps": [[s.event, s.actor, s.at] for s in steps]}
store.close()
out["timeline"] = hasattr(store, "timeline")
out["user_version"] = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
print(orjson.dumps(out).decode())
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def earlier_releases() -> list[str]:
    """Commits whose alert store schema differs from today's: every change of alerts/migrations/ and
    the commit before the first one (a store from before migrations existed)."""
    try:
        if git("rev-parse", "--is-shallow-repository").strip() == "true":
            return []
        changed = git("log", "--first-parent", "--format=%H", "--", "alerts/migrations").split()
    except (OSError, subprocess.CalledProcessError):
        return []
    out = []
    for commit in changed:
        names = git("ls-tree", "--name-only", f"{commit}:alerts/migrations").split()
        if len([n for n in names if n.endswith(".sql")]) < LATEST:
            out.append(commit)
    if changed:
        out.append(git("rev-parse", f"{changed[-1]}^1").strip())
    return out


RELEASES = earlier_releases()


def checkout(commit: str, into: Path) -> None:
    data = subprocess.run(["git", "archive", "--format=tar", commit, "alerts", "core"], cwd=ROOT,
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def test_history_is_there() -> None:
    if not RELEASES:
        pytest.skip("no git history here (a shallow clone or no .git): earlier releases cannot be built")
    assert len(RELEASES) >= 2
    oldest = RELEASES[-1]  # from before migrations
    assert subprocess.run(["git", "cat-file", "-e", f"{oldest}:alerts/migrations"], cwd=ROOT).returncode != 0


@pytest.mark.parametrize("commit", RELEASES or [pytest.param("none", marks=pytest.mark.skip(
    reason="no git history here (a shallow clone or no .git): earlier releases cannot be built"))])
def test_store_from_an_earlier_release_upgrades(commit: str, tmp_path: Path) -> None:
    old = tmp_path / "old"
    checkout(commit, old)
    now = time.time()
    t0, t1 = (timebase.iso(now - minutes * 60) for minutes in (10, 8))
    store_file = tmp_path / "alerts.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env |= {"PYTHONPATH": str(old), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-c", OLD_SIDE, str(store_file), t0, t1], cwd=old, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{commit[:9]}'s code could not make its store:\n{run.stderr[-3000:]}"
    before = orjson.loads(run.stdout)
    assert before["user_version"] < LATEST, before  # an earlier schema indeed

    store = AlertStore(store_file)  # today's code: migrates
    try:
        for aid in ("old-1", "old-2"):
            a = store.get(aid)
            assert a is not None, aid
            was = before[aid]
            assert (a.state, a.acked_by, a.note, a.value, a.updated_at) == (
                was["state"], was["acked_by"], was["note"], was["value"], was["updated_at"])
            steps = was["steps"]
            if not before["timeline"]:  # made before the timeline: migration 0002 writes it from the row
                steps = [["raised", "system", t0]] + ([["acknowledged", was["acked_by"], was["updated_at"]]]
                                                      if was["acked_by"] else [])
            assert [[s.event, s.actor, s.at] for s in store.timeline(aid)] == steps, aid
        assert store.get("old-1").state == "acknowledged" and store.get("old-1").acked_by == "王五"
        assert {a.alert_id for a in store.open_alerts().values()} == {"old-1", "old-2"}
        # ... and today's code goes on with it: a resolve is recorded after the old steps.
        store.resolve("old-2", timebase.iso(now), note="复测正常", by="李四")
        steps = store.timeline("old-2")
        assert [s.event for s in steps] == ["raised", "resolved"]
    finally:
        store.close()
    with sqlite3.connect(store_file) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST
