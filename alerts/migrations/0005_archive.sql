-- Archive (归档): a red or orange alert closed out by a person with a cause category, once.
CREATE TABLE archives (
    alert_id TEXT PRIMARY KEY,
    archived_at TEXT NOT NULL,
    archived_by TEXT NOT NULL,
    cause TEXT NOT NULL,
    note TEXT
);
