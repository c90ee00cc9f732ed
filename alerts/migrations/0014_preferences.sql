-- Notification preferences of the people of the on-call roster, set by each person on /settings and
-- written by the alerts service (a `preferences` command): the channels wanted below red (a JSON list
-- of roster channel fields) and quiet hours in Beijing time ("22:00-07:00", may run past midnight).
-- Who set them and when are kept with them (the command itself is kept in `commands`).
CREATE TABLE IF NOT EXISTS preferences (
    person TEXT PRIMARY KEY,
    channels TEXT NOT NULL,
    quiet TEXT,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
