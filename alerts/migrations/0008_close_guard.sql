-- Closing while the danger is still measured (contract §4): how often an incident came back, and the
-- watch after every close. While a (rule, subject) is under watch, the condition holding again reopens
-- the alert that closed (same alert_id) instead of raising a new one.
ALTER TABLE alerts ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0;
CREATE TABLE watches (
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    closed_at REAL NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (rule, subject)
);
-- A shelf of a life-safety alarm (gas, red) needs a second person; it stays visible while it lasts.
ALTER TABLE shelves ADD COLUMN approved_by TEXT;
ALTER TABLE shelves ADD COLUMN life_safety INTEGER NOT NULL DEFAULT 0;
