"""Score alerts (contract §4 alert messages) against a simulator ground-truth file.

- An expected item is (scenario instance, rule, device). It is detected when an alert with that
  rule and device starts inside the instance's window [start − tolerance, end + grace].
- Precision = alerts matching an expected item (required or optional) / alerts in scope.
  In scope: started during the run (± grace) on a device the run simulated (its filters or
  its incidents). Alerts on false-alarm bait are false positives, also counted apart.
- Recall = detected required items / required items whose onset fell inside the run.
- Time to detect = alert started_at − the item's onset (the moment its condition became true).
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.severity import rank
from core.validation import Rejected, parse_ts


@dataclass(slots=True)
class Truth:
    run: dict[str, Any]
    scenarios: list[dict[str, Any]]


def read_truth(path: str | Path) -> Truth:
    run: dict[str, Any] = {}
    scenarios = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        if doc.get("type") == "run":
            run = doc
        else:
            scenarios.append(doc)
    return Truth(run, scenarios)


def fetch_alerts(src: str, token: str | None = None, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Alerts from a JSON/JSONL file, or from GET {url}/api/alerts."""
    if src.startswith(("http://", "https://")):
        url = src if "/api/alerts" in src else src.rstrip("/") + "/api/alerts?limit=5000"
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            doc = json.loads(resp.read())
    else:
        text = Path(src).read_text(encoding="utf-8").strip()
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:  # JSONL, e.g. captured from sc/alerts/#
            doc = [json.loads(x) for x in text.splitlines() if x.strip()]
    if isinstance(doc, dict):
        doc = doc.get("alerts", [])
    return [a for a in doc if isinstance(a, dict)]


def _ms(v: Any) -> int | None:
    try:
        return parse_ts(v) if v is not None else None
    except Rejected:
        return None


def dedupe(alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per alert_id (state changes collapse): earliest start, highest severity seen."""
    by_id: dict[str, dict[str, Any]] = {}
    for n, a in enumerate(alerts):
        aid = str(a.get("alert_id") or f"#{n}")
        start = _ms(a.get("started_at"))
        if start is None:
            continue
        cur = by_id.get(aid)
        if cur is None:
            by_id[aid] = {**a, "_start": start}
            continue
        cur["_start"] = min(cur["_start"], start)
        if rank(str(a.get("severity"))) > rank(str(cur.get("severity"))):
            cur["severity"] = a.get("severity")
    return sorted(by_id.values(), key=lambda a: a["_start"])


def same_subject(x: Mapping[str, Any], a: Mapping[str, Any]) -> bool:
    """An expected item and an alert are about the same thing: the device, or for a place alert
    (no device) the same compound ("" for a community) in the same community."""
    if x["rule"] != a.get("rule") or (x.get("device_id") or "") != (a.get("device_id") or ""):
        return False
    if x.get("device_id"):
        return True
    return (x.get("compound_id") or "") == (a.get("compound_id") or "") and x.get("community") == a.get("community")


def score(
    alerts: Iterable[Mapping[str, Any]], truth: Truth, tolerance_s: float = 5.0, grace_s: float | None = None
) -> dict[str, Any]:
    run = truth.run
    max_iv = float(run.get("max_interval_s") or 60.0)
    grace = grace_s if grace_s is not None else 3 * max_iv + 60.0  # silence needs 3 × interval
    tol = int(tolerance_s * 1000)
    run_start = int(run.get("start_ms") or min((s["start_ms"] for s in truth.scenarios), default=0))
    run_end = run.get("end_ms") or max((s["end_ms"] for s in truth.scenarios), default=run_start)
    lo, hi = run_start - tol, int(run_end) + int(grace * 1000)

    items: list[dict[str, Any]] = []
    bait_windows: dict[str, list[tuple[int, int]]] = {}
    incident_devices: set[str] = set()
    for s in truth.scenarios:
        incident_devices.update(s["devices"])
        if s.get("bait"):
            for d in s["devices"]:
                bait_windows.setdefault(d, []).append((s["start_ms"] - tol, s["end_ms"] + int(grace * 1000)))
        for x in s.get("expected", ()):
            in_run = run.get("end_ms") is None or x["onset_ms"] <= int(run["end_ms"])
            items.append({**x, "instance": s["instance"], "win": (s["start_ms"] - tol, s["end_ms"] + int(grace * 1000)),
                          "required": in_run and not x.get("optional"), "hits": []})

    communities = {s.get("community") for s in truth.scenarios}

    def in_fleet(a: Mapping[str, Any]) -> bool:
        if a.get("device_id") in incident_devices:
            return True
        if not a.get("device_id") and a.get("community") in communities:
            return True  # a place alert where an incident was
        return all(not run.get(f) or a.get(k) in run[f] for f, k in
                   (("communities", "community"), ("kinds", "kind"), ("compounds", "compound_id")))

    scoped = [a for a in dedupe(alerts) if lo <= a["_start"] <= hi and in_fleet(a)]
    matched = dup = bait = sev_bad = after_run = 0
    false_pos: list[dict[str, Any]] = []
    for a in scoped:
        hit = next((x for x in items if same_subject(x, a)
                    and x["win"][0] <= a["_start"] <= x["win"][1] and not x["hits"]), None)
        if hit is None and a["_start"] > int(run_end) + tol:
            after_run += 1  # the simulator stopped: the fleet going silent then is neither hit nor false alarm
            continue
        if hit is None:  # a second alert for an already-detected item
            again = any(same_subject(x, a) and x["win"][0] <= a["_start"] <= x["win"][1] for x in items)
            if again:
                dup += 1
                matched += 1
                continue
            if any(w0 <= a["_start"] <= w1 for w0, w1 in bait_windows.get(str(a.get("device_id")), ())):
                bait += 1
            false_pos.append({k: a.get(k) for k in ("alert_id", "rule", "severity", "device_id", "started_at")})
            continue
        hit["hits"].append(a)
        matched += 1
        if a.get("severity") != hit["severity"]:
            sev_bad += 1

    required = [x for x in items if x["required"]]
    detected = [x for x in required if x["hits"]]
    ttd = [max(0.0, (x["hits"][0]["_start"] - x["onset_ms"]) / 1000.0) for x in detected]
    per_rule: dict[str, dict[str, Any]] = {}
    for x in required:
        r = per_rule.setdefault(x["rule"], {"expected": 0, "detected": 0, "ttd_s": []})
        r["expected"] += 1
        if x["hits"]:
            r["detected"] += 1
            r["ttd_s"].append(round(max(0.0, (x["hits"][0]["_start"] - x["onset_ms"]) / 1000.0), 3))
    return {
        "alerts_in_scope": len(scoped) - after_run,
        "true_positives": matched,
        "false_positives": len(false_pos),
        "duplicates": dup,
        "bait_alerts": bait,
        "severity_mismatches": sev_bad,
        "expected": len(required),
        "detected": len(detected),
        "missed": [{k: x[k] for k in ("instance", "rule", "device_id", "onset")} for x in required if not x["hits"]],
        "precision": round(matched / (len(scoped) - after_run), 4) if len(scoped) > after_run else None,
        "recall": round(len(detected) / len(required), 4) if required else None,
        "ttd_mean_s": round(statistics.fmean(ttd), 3) if ttd else None,
        "ttd_s": sorted(round(t, 3) for t in ttd),
        "ttd_max_s": round(max(ttd), 3) if ttd else None,
        "per_rule": per_rule,
        "false_positive_alerts": false_pos[:50],
    }


def format_score(r: Mapping[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f} %"

    lines = [
        f"precision {pct(r['precision'])} ({r['true_positives']}/{r['alerts_in_scope']} alerts; "
        f"{r['false_positives']} false, {r['bait_alerts']} on bait, {r['duplicates']} duplicates)",
        f"recall    {pct(r['recall'])} ({r['detected']}/{r['expected']} expected)",
        f"time to detect: mean {r['ttd_mean_s']} s, max {r['ttd_max_s']} s",
    ]
    for rule, v in sorted(r["per_rule"].items()):
        lines.append(f"  {rule:20} {v['detected']}/{v['expected']}  ttd {v['ttd_s']}")
    for m in r["missed"][:20]:
        lines.append(f"  missed {m['rule']} on {m['device_id']} ({m['instance']}, onset {m['onset']})")
    return "\n".join(lines)
