"""Benchmark of the period report (issue #10). Plain script: `python bench/bench_report.py [--alerts N]`.

A month with N alerts (default 20,000: a very bad month for 4 communities), each acknowledged,
a third dispatched and arrived, most resolved; prints the time to build the report, to write its
CSV and its HTML, against a ceiling measured in the same run (one full scan of the alert and
timeline tables), plus the load average — the 2-core machine is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from alerts.report import Period, build_report, to_csv, to_html
    from alerts.store import AlertStore
    from core.contract import COMMUNITIES
    from core.timebase import BEIJING, iso

    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=20_000)
    args = ap.parse_args()
    rng = random.Random(1)
    start = datetime(2026, 11, 1, tzinfo=BEIJING).timestamp()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.sqlite"
        store = AlertStore(path)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN")
        comms = list(COMMUNITIES)
        for i in range(args.alerts):
            t0 = start + rng.uniform(0, 29 * 86400)
            aid, c = f"a-{i:06d}", rng.choice(comms)
            resolved = iso(t0 + rng.uniform(300, 9000)) if rng.random() < 0.9 else None
            db.execute("INSERT INTO alerts(alert_id, rule, severity, state, community, compound_id, device_id, kind,"
                       " started_at, updated_at, message, resolved_at, subject) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (aid, "r", rng.choice(["red", "orange", "yellow", "blue"]),
                        "resolved" if resolved else "acknowledged", c, f"{c[:2]}-{rng.randint(1, 40):02d}",
                        f"D-{rng.randint(1, 3000):05d}", rng.choice(["gas", "water", "power", "camera"]),
                        iso(t0), iso(t0), "m", resolved, aid))
            db.execute("INSERT INTO alert_events(alert_id, at, event, actor) VALUES (?,?,?,?)",
                       (aid, iso(t0), "raised", "system"))
            db.execute("INSERT INTO alert_events(alert_id, at, event, actor) VALUES (?,?,?,?)",
                       (aid, iso(t0 + rng.uniform(5, 600)), "acknowledged", "x"))
            if rng.random() < 0.33:
                db.execute("INSERT INTO alert_events(alert_id, at, event, actor) VALUES (?,?,?,?)",
                           (aid, iso(t0 + rng.uniform(300, 3000)), "arrived", "y"))
        db.execute("COMMIT")
        period = Period.month("2026-11")

        t = time.perf_counter()
        n = db.execute("SELECT count(*), max(started_at) FROM alerts").fetchone()[0]
        m = db.execute("SELECT count(*), max(at) FROM alert_events").fetchone()[0]
        ceiling = time.perf_counter() - t
        t = time.perf_counter()
        rep = build_report(store, period, now=time.time())
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        csv = to_csv(rep)
        t_csv = time.perf_counter() - t
        t = time.perf_counter()
        page = to_html(rep, "")
        t_html = time.perf_counter() - t
        assert rep.sections["*"].total == n
        store.close()
        db.close()
    print(f"report of {n} alerts / {m} timeline steps: build {t_build * 1000:.0f} ms "
          f"(full-scan floor {ceiling * 1000:.0f} ms, ratio {t_build / max(ceiling, 1e-6):.1f}x), "
          f"CSV {t_csv * 1000:.0f} ms ({len(csv) / 1024:.0f} KiB), HTML {t_html * 1000:.0f} ms "
          f"({len(page) / 1024:.0f} KiB without plotly.js); load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
