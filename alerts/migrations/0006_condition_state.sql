-- What the engine knows of every condition, kept with the alerts so that a restart (even kill -9)
-- carries on where it was: when the condition became true (device time, for `for_s`), when it
-- last became clear (wall time, for the hold-off), its last value and the time of its last evidence.
CREATE TABLE conditions (
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    true_since_ts INTEGER,
    clear_since REAL,
    last_value TEXT,
    last_evidence REAL,
    data TEXT,
    PRIMARY KEY (rule, subject)
);
-- When each device was last heard from (wall time, epoch seconds): silence carries on across a restart,
-- and a device that has never reported is told apart from one that fell silent.
CREATE TABLE device_seen (
    device_id TEXT PRIMARY KEY,
    last_seen REAL NOT NULL
);
