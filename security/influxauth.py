"""InfluxDB 1.x with authentication on: an admin for `up`, a writer for ingest, a reader for the dashboard.

`up` starts the local InfluxDB with `auth-enabled = true`; the first time, InfluxDB lets the
first admin be created without credentials (its password is made then, 0600 under the secrets
dir). With the admin, `up` makes the database, its retention policies and continuous queries,
and the two accounts: `sc_writer` may only WRITE and `sc_reader` may only READ that database.
Passwords are re-set from the secret files at every start, so rotating one is: replace the file
(or the SC_SECRET_INFLUX_* variable) and restart.
"""

from __future__ import annotations

import logging

from core.accounts import INFLUX_ADMIN, INFLUX_READER, INFLUX_WRITER
from core.influx import InfluxClient, InfluxRejected, client_for, quote_ident, quote_str
from core.secrets import ensure_secret
from core.settings import Settings

log = logging.getLogger(__name__)

GRANTS = {INFLUX_WRITER: "WRITE", INFLUX_READER: "READ"}

AUTH_CONF = """
[http]
  auth-enabled = true
  pprof-enabled = false
"""


class InfluxAuthError(RuntimeError):
    pass


def ensure_users(settings: Settings, url: str) -> None:
    """Admin (created if the server has no user yet), database, retention, writer and reader."""
    from ingest.retention import ensure_retention

    admin_pw = ensure_secret(settings, "influx", INFLUX_ADMIN)
    anon = InfluxClient(url, settings.influx_db)
    try:
        try:
            users = anon.query("SHOW USERS", db=False, epoch=None)
            has_users = any(s.values for s in users)
        except InfluxRejected as exc:  # auth on: users exist, unless it asks for the first admin
            has_users = "create admin user first" not in exc.error
        if not has_users:
            anon.query(f"CREATE USER {quote_ident(INFLUX_ADMIN)} WITH PASSWORD {quote_str(admin_pw)} "
                       "WITH ALL PRIVILEGES", db=False, epoch=None)
            log.info("InfluxDB: created the admin account %s", INFLUX_ADMIN)
    finally:
        anon.close()
    admin = client_for(settings, account=INFLUX_ADMIN)
    try:
        try:
            existing = {r["user"] for r in admin.rows("SHOW USERS")}
        except InfluxRejected as exc:
            raise InfluxAuthError(
                f"InfluxDB refuses the admin account {INFLUX_ADMIN} ({exc.error[:120]}): its password in "
                f"{settings.secrets_path / 'influx' / INFLUX_ADMIN} does not match the one in the database"
            ) from None
        admin.create_database()
        ensure_retention(admin, settings.influx_raw_days, settings.influx_rollup_days)
        for user, right in GRANTS.items():
            pw = ensure_secret(settings, "influx", user)
            if user in existing:
                admin.query(f"SET PASSWORD FOR {quote_ident(user)} = {quote_str(pw)}", db=False, epoch=None)
            else:
                admin.query(f"CREATE USER {quote_ident(user)} WITH PASSWORD {quote_str(pw)}", db=False, epoch=None)
            admin.query(f"REVOKE ALL PRIVILEGES ON {quote_ident(settings.influx_db)} FROM {quote_ident(user)}",
                        db=False, epoch=None)
            admin.query(f"GRANT {right} ON {quote_ident(settings.influx_db)} TO {quote_ident(user)}",
                        db=False, epoch=None)
    finally:
        admin.close()
