-- Leases: which process runs an alert partition when several hosts could (alerts/lease.py).
-- `expires` is epoch seconds on the database's clock; `epoch` counts the hand-overs.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL,
    epoch INTEGER NOT NULL
);
