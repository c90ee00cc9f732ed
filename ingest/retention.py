"""Retention and downsampling on InfluxDB 1.x, set up idempotently when ingest starts.

- Raw points stay in the database's default policy `autogen`, cut to `SC_INFLUX_RAW_DAYS` (so every
  reader that does not name a policy keeps working unchanged).
- 1-minute aggregates (`mean_*`, `min_*`, `max_*` of every numeric field, per series) go to policy
  `rollup_1m`, kept `SC_INFLUX_ROLLUP_DAYS`, filled by one continuous query per telemetry
  measurement (`cq_rollup_1m_<kind>`), resampling the last 5 minutes so late points are included.
Servers without policies/CQs (2.x/3.x through the v1 API) get a warning and nothing else.
"""

from __future__ import annotations

import logging

from core.contract import KINDS
from core.influx import InfluxClient, InfluxRejected, InfluxUnavailable, quote_ident

log = logging.getLogger(__name__)

RAW_POLICY = "autogen"
ROLLUP_POLICY = "rollup_1m"


def cq_name(measurement: str) -> str:
    return f"cq_rollup_1m_{measurement}"


def cq_query(db: str, measurement: str) -> str:
    d, m = quote_ident(db), quote_ident(measurement)
    return (
        f"CREATE CONTINUOUS QUERY {quote_ident(cq_name(measurement))} ON {d} "
        f"RESAMPLE EVERY 1m FOR 5m BEGIN "
        f"SELECT mean(*), min(*), max(*) INTO {d}.{ROLLUP_POLICY}.{m} FROM {d}.{RAW_POLICY}.{m} "
        f"GROUP BY time(1m), * END"
    )


def _policies(influx: InfluxClient) -> dict[str, str]:
    rows = influx.rows(f"SHOW RETENTION POLICIES ON {quote_ident(influx.db)}")
    return {r["name"]: str(r["duration"]) for r in rows}


def _set_policy(influx: InfluxClient, name: str, days: int, default: bool, have: dict[str, str]) -> None:
    verb = "ALTER" if name in have else "CREATE"
    q = f"{verb} RETENTION POLICY {quote_ident(name)} ON {quote_ident(influx.db)} DURATION {days}d"
    q += " REPLICATION 1" + (" DEFAULT" if default else "")
    influx.query(q, epoch=None)


def ensure_retention(influx: InfluxClient, raw_days: int, rollup_days: int) -> bool:
    """Create/adjust the policies and CQs. True when done; False (warned) where unsupported.

    Raises InfluxUnavailable when the server does not answer (the caller retries later).
    """
    try:
        influx.create_database()
        have = _policies(influx)
        _set_policy(influx, RAW_POLICY, raw_days, True, have)
        _set_policy(influx, ROLLUP_POLICY, rollup_days, False, have)
        existing = {
            r["name"]: r["query"]
            for s in influx.query("SHOW CONTINUOUS QUERIES")
            if s.name == influx.db
            for r in s.rows()
        }
        for kind in KINDS:
            want = cq_query(influx.db, kind)
            if existing.get(cq_name(kind)) == want:
                continue
            if cq_name(kind) in existing:  # definition changed: replace it
                influx.query(f"DROP CONTINUOUS QUERY {quote_ident(cq_name(kind))} ON {quote_ident(influx.db)}",
                             epoch=None)
            influx.query(want, epoch=None)
    except InfluxUnavailable:
        raise
    except InfluxRejected as exc:
        if exc.status in (401, 403) or "authoriz" in exc.error:
            # SC_SECURE: ingest writes as an account that may only WRITE; `up` set retention up as admin.
            log.info("retention is set up by an InfluxDB admin, not by this account (%s)", exc.error[:80])
            return False
        log.warning("InfluxDB at %s has no retention policies / continuous queries (%s): raw data is kept "
                    "as the server's own retention says, and no 1-minute rollups are made", influx.base, exc)
        return False
    log.info("retention: raw %dd in %s, 1-minute rollups %dd in %s", raw_days, RAW_POLICY,
             rollup_days, ROLLUP_POLICY)
    return True
