-- The change feed: every write of an alert row (raised, updated, acknowledged, resolved, reopened)
-- appends its id here, in the same transaction, whichever code path made it. Readers (the
-- dashboard's live picture) follow `seq` instead of watching the database file. Only the newest
-- 10,000 entries are kept: a reader further behind than that reloads everything.
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS changes_on_insert AFTER INSERT ON alerts BEGIN
    INSERT INTO changes(alert_id) VALUES (NEW.alert_id);
    DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - 10000;
END;
CREATE TRIGGER IF NOT EXISTS changes_on_update AFTER UPDATE ON alerts BEGIN
    INSERT INTO changes(alert_id) VALUES (NEW.alert_id);
    DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - 10000;
END;
