"""The project's own accounts on the broker and on InfluxDB, and which part runs as which.

Service account names contain a `.`, which a device id cannot (contract: `[A-Za-z0-9_-]`), so a
registered device can never be provisioned over a service account. Their rights are in
`security/broker.py` (broker ACL) and `security/influxauth.py` (InfluxDB grants).
"""

from __future__ import annotations

MQTT_INGEST = "svc.ingest"  # reads sc/#
INGEST_WORKER_ACCOUNTS = 8  # `ingest --workers N`: worker w connects as svc.ingest-w (same rights)
MQTT_ALERTS = "svc.alerts"  # reads the records ingest forwards, publishes sc/alerts/#
# `alerts --communities a,b`: each partition connects as svc.alerts-{first of its slugs} (same rights)
MQTT_DASHBOARD = "svc.dashboard"  # connects only (health); staff actions are commands to the alerts service
MQTT_DASHBOARD_LIVE = "svc.dashboard-live"  # reads alert copies and device status for the live map
MQTT_HEALTH = "svc.health"  # connects only: /api/health's broker probe
MQTT_SIMULATOR = "svc.simulator"  # the demo's simulated fleet: publishes as registered devices
MQTT_DEMO_STORY = "svc.demo-story"  # the demo's simulated staff (they act through /api)
# A community's edge broker bridges into the center as svc.edge-{community} (smartcommunity/edge.py).
MQTT_EDGE = "svc.edge"

INFLUX_ADMIN = "sc_admin"  # `up` only: creates the database, policies, users
INFLUX_WRITER = "sc_writer"  # ingest: WRITE on SC_INFLUX_DB
INFLUX_READER = "sc_reader"  # dashboard: READ on SC_INFLUX_DB

# part (as `up`/`demo` name it) -> (broker account, InfluxDB account)
PART_ACCOUNTS: dict[str, tuple[str | None, str | None]] = {
    "ingest": (MQTT_INGEST, INFLUX_WRITER),
    "alerts": (MQTT_ALERTS, None),
    "dashboard": (MQTT_DASHBOARD, INFLUX_READER),
    "simulate": (MQTT_SIMULATOR, None),
    "demo-story": (MQTT_DEMO_STORY, None),
}


def part_env(part: str, secure: bool) -> dict[str, str]:
    """SC_* variables naming the accounts a part runs as (no secret: those stay in 0600 files)."""
    if not secure or part not in PART_ACCOUNTS:
        return {}
    mqtt_acct, influx_acct = PART_ACCOUNTS[part]
    env: dict[str, str] = {}
    if mqtt_acct:
        env["SC_MQTT_ACCOUNT"] = mqtt_acct
    if influx_acct:
        env["SC_INFLUX_ACCOUNT"] = influx_acct
    return env


def ingest_account(base: str | None, worker: int, workers: int) -> str | None:
    """The broker account of one ingest worker: the secure broker allows one connection per account."""
    if base is None or workers <= 1:
        return base
    if worker >= INGEST_WORKER_ACCOUNTS:
        raise ValueError(f"with SC_SECURE, ingest runs at most {INGEST_WORKER_ACCOUNTS} workers")
    return f"{base}-{worker}"


def edge_account(community: str) -> str:
    """The center's broker account the bridge of one community's edge broker connects as."""
    return f"{MQTT_EDGE}-{community}"


def alerts_account(base: str | None, communities: frozenset[str] | None) -> str | None:
    """The broker account of an alert engine over some communities: partitions are disjoint, so the
    first of their (sorted) slugs tells them apart; the secure broker allows one connection per account."""
    if base is None or communities is None:
        return base
    return f"{base}-{min(communities)}"
