-- Shelving / maintenance windows: a device, a compound or a rule is shelved for a time with a reason.
-- Alerts raised under a shelf are recorded but not notified; the shelf ends by itself at `until`.
CREATE TABLE shelves (
    shelf_id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL CHECK (scope IN ('device', 'compound', 'rule')),
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    until REAL NOT NULL,
    until_iso TEXT NOT NULL,
    ended_at TEXT,
    ended_by TEXT
);
CREATE INDEX shelves_live ON shelves(until) WHERE ended_at IS NULL;
