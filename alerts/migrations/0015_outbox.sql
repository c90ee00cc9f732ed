-- The notification outbox and each target's cursor, in the store, for engines on several hosts
-- (alerts/delivery.py `TableOutbox`): used when the store is PostgreSQL, so that the engine that takes
-- over a partition's lease goes on delivering where the dead one stopped. A SQLite deployment keeps
-- its outbox file and cursor files (the tables stay empty; both backends have the same schema).
-- `seq` is the position of an entry (in commit order: appends take the store's write lock);
-- `id` the entry's own (a write repeated after a lost answer is not a second entry);
-- `part` the partition (the lease's name, "alerts" for the whole street); `state` a cursor's JSON
-- (position, finished entries past it, rate window, block); `owner` the process delivering for it.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    part TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_part ON outbox(part, seq);
CREATE TABLE IF NOT EXISTS outbox_cursors (
    part TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (part, target)
);
