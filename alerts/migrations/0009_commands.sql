-- Staff commands the alerts service has applied (alerts/command/): a command sent again with the
-- same id (a retry after a timeout or a restart) is answered from here, never applied twice.
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    actor TEXT,
    at TEXT NOT NULL,
    status INTEGER,          -- NULL: applied, its answer not written yet (a crash in between)
    answer TEXT
);
