-- The timeline: every step of every alert, append-only (who, when, what, note, details as JSON).
CREATE TABLE alert_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT 'system',
    note TEXT,
    data TEXT
);
CREATE INDEX alert_events_alert ON alert_events(alert_id, seq);
CREATE INDEX alert_events_at ON alert_events(at);
CREATE TRIGGER alert_events_no_update BEFORE UPDATE ON alert_events
BEGIN
    SELECT RAISE(ABORT, 'the alert timeline is append-only');
END;
CREATE TRIGGER alert_events_no_delete BEFORE DELETE ON alert_events
BEGIN
    SELECT RAISE(ABORT, 'the alert timeline is append-only');
END;
-- What older stores knew, carried into the timeline: raised, acknowledged, resolved.
INSERT INTO alert_events(alert_id, at, event, actor, note, data)
    SELECT alert_id, started_at, 'raised', 'system', NULL,
           json_object('severity', severity, 'value', value, 'message', message, 'migrated', 1)
    FROM alerts ORDER BY started_at;
INSERT INTO alert_events(alert_id, at, event, actor, note, data)
    SELECT alert_id, updated_at, 'acknowledged', acked_by, note, json_object('migrated', 1)
    FROM alerts WHERE acked_by IS NOT NULL AND state = 'acknowledged';
INSERT INTO alert_events(alert_id, at, event, actor, note, data)
    SELECT alert_id, resolved_at, 'resolved', COALESCE(acked_by, 'system'), note, json_object('migrated', 1)
    FROM alerts WHERE state = 'resolved' AND resolved_at IS NOT NULL;
