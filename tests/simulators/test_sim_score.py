"""The scorer on hand-made alert lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.timebase import iso_ms as iso
from simulators.score import fetch_alerts, format_score, read_truth, score

T0 = 1_795_579_800_000


def _truth(tmp_path: Path) -> Path:
    run = {"type": "run", "start_ms": T0, "end_ms": T0 + 900_000, "max_interval_s": 30,
           "communities": [], "kinds": [], "compounds": []}
    leak = {"type": "scenario", "instance": "gas_leak#1", "scenario": "gas_leak", "bait": False,
            "devices": ["G-1"], "compound_id": "YL-01", "community": "yanling",
            "start_ms": T0 + 60_000, "end_ms": T0 + 480_000, "expected": [
                {"rule": "gas_lel_high", "severity": "red", "device_id": "G-1", "onset_ms": T0 + 84_000,
                 "onset": iso(T0 + 84_000), "optional": False},
                {"rule": "gas_lel_warn", "severity": "yellow", "device_id": "G-1", "onset_ms": T0 + 99_000,
                 "onset": iso(T0 + 99_000), "optional": False},
                {"rule": "device_silent", "severity": "blue", "device_id": "G-1", "onset_ms": T0 + 99_000,
                 "onset": iso(T0 + 99_000), "optional": True}]}
    bait = {"type": "scenario", "instance": "bait_spike#2", "scenario": "bait_spike", "bait": True,
            "devices": ["G-2"], "compound_id": "YL-02", "community": "yanling",
            "start_ms": T0, "end_ms": T0 + 120_000, "expected": []}
    p = tmp_path / "truth.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in (run, leak, bait)) + "\n")
    return p


def _alert(aid: str, rule: str, dev: str, at_ms: int, sev: str, state: str = "active") -> dict[str, Any]:
    return {"alert_id": aid, "rule": rule, "severity": sev, "state": state, "device_id": dev,
            "community": "yanling", "kind": "gas", "compound_id": "YL-01",
            "started_at": iso(at_ms), "updated_at": iso(at_ms)}


def test_perfect(tmp_path: Path) -> None:
    alerts = [_alert("a1", "gas_lel_high", "G-1", T0 + 86_000, "red"),
              _alert("a1", "gas_lel_high", "G-1", T0 + 86_000, "red", "resolved"),
              _alert("a2", "gas_lel_warn", "G-1", T0 + 104_000, "yellow")]
    r = score(alerts, read_truth(_truth(tmp_path)))
    assert r["precision"] == 1.0 and r["recall"] == 1.0
    assert r["ttd_mean_s"] == pytest.approx(3.5) and r["ttd_max_s"] == pytest.approx(5.0)
    assert "precision 100.0 %" in format_score(r)


def test_missed_false_bait_duplicate_and_out_of_scope(tmp_path: Path) -> None:
    alerts = [_alert("a1", "gas_lel_high", "G-1", T0 + 90_000, "orange"),   # detected, wrong severity
              _alert("a3", "gas_lel_high", "G-1", T0 + 200_000, "red"),     # duplicate
              _alert("a4", "gas_lel_warn", "G-2", T0 + 20_000, "yellow"),   # bait → false positive
              _alert("a5", "power_temp_high", "P-9", T0 + 50_000, "orange"),  # plain false positive
              _alert("a6", "gas_lel_high", "G-1", T0 - 3_600_000, "red"),   # before the run: ignored
              _alert("a7", "device_silent", "G-1", T0 + 200_000, "blue")]   # optional: a TP
    r = score(alerts, read_truth(_truth(tmp_path)))
    assert r["alerts_in_scope"] == 5
    assert r["true_positives"] == 3 and r["duplicates"] == 1
    assert r["false_positives"] == 2 and r["bait_alerts"] == 1
    assert r["precision"] == 0.6 and r["recall"] == 0.5 and r["severity_mismatches"] == 1
    assert [m["rule"] for m in r["missed"]] == ["gas_lel_warn"]
    assert r["ttd_max_s"] == 6.0


def test_no_alerts(tmp_path: Path) -> None:
    r = score([], read_truth(_truth(tmp_path)))
    assert r["precision"] is None and r["recall"] == 0.0 and r["ttd_mean_s"] is None


def test_alerts_from_file_json_and_jsonl(tmp_path: Path) -> None:
    a = [_alert("a1", "gas_lel_high", "G-1", T0, "red")]
    (tmp_path / "a.json").write_text(json.dumps({"alerts": a}))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(x) for x in a * 2))
    assert fetch_alerts(str(tmp_path / "a.json")) == a
    assert len(fetch_alerts(str(tmp_path / "b.jsonl"))) == 2


def test_silence_after_the_run_ends_is_not_a_false_alarm() -> None:
    """When the simulator stops, every device goes silent: those alerts are outside the experiment."""
    from simulators.score import Truth, score

    run = {"type": "run", "start_ms": 1_000_000, "end_ms": 2_000_000, "max_interval_s": 30}
    truth = Truth(run=run, scenarios=[])
    after = {"alert_id": "a-1", "rule": "device_silent", "severity": "blue", "device_id": "G-000001",
             "started_at": "1970-01-01T00:33:40.000Z"}  # 2,020,000 ms: after the run
    during = dict(after, alert_id="a-2", started_at="1970-01-01T00:25:00.000Z")  # 1,500,000 ms
    res = score([after, during], truth)
    assert res["false_positives"] == 1
    assert res["alerts_in_scope"] == 1 and res["precision"] == 0.0
