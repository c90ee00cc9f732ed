-- Maintenance windows: a shelf may recur every week (`every`, e.g. "mon-fri 09:00-11:00", Beijing time,
-- in force only inside that window until `until`) and may cover a device kind (scope 'kind').
-- SQLite cannot widen a CHECK in place: the table is rebuilt with its rows and ids.
CREATE TABLE shelves_new (
    shelf_id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL CHECK (scope IN ('device', 'compound', 'rule', 'kind')),
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    until REAL NOT NULL,
    until_iso TEXT NOT NULL,
    ended_at TEXT,
    ended_by TEXT,
    approved_by TEXT,
    life_safety INTEGER NOT NULL DEFAULT 0,
    every TEXT
);
INSERT INTO shelves_new (shelf_id, scope, target, reason, by, created_at, until, until_iso, ended_at, ended_by,
                         approved_by, life_safety)
    SELECT shelf_id, scope, target, reason, by, created_at, until, until_iso, ended_at, ended_by, approved_by,
           life_safety FROM shelves;
DROP TABLE shelves;
ALTER TABLE shelves_new RENAME TO shelves;
CREATE INDEX shelves_live ON shelves(until) WHERE ended_at IS NULL;
