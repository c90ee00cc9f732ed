-- The alert table as it stood before numbered migrations (the Alert message of the contract plus
-- the project's fields); IF NOT EXISTS makes this a no-op on stores made by that version.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, rule TEXT, severity TEXT, state TEXT, community TEXT, compound_id TEXT,
    device_id TEXT, kind TEXT, metric TEXT, value TEXT, threshold TEXT, lon TEXT, lat TEXT,
    started_at TEXT, updated_at TEXT, message TEXT, resolved_at TEXT, acked_by TEXT, note TEXT,
    nearby TEXT, escalation_tier TEXT,
    subject TEXT NOT NULL
);
-- One unresolved alert per (rule, subject), across processes.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts(rule, subject) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_started ON alerts(started_at);
