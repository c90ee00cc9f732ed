-- Patrols and hazards (巡检, 隐患排查): every check-in at a checkpoint of a patrol plan
-- (alerts/patrols.py), and the hazards its findings open, tracked to closure with a deadline.
CREATE TABLE IF NOT EXISTS patrol_checkins (
    checkin_id TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    community TEXT NOT NULL,
    at TEXT NOT NULL,
    by TEXT NOT NULL,
    lon REAL NOT NULL,
    lat REAL NOT NULL,
    accuracy_m REAL,
    distance_m REAL NOT NULL,
    findings TEXT,
    photos TEXT,
    hazard_id TEXT
);
CREATE INDEX IF NOT EXISTS patrol_checkins_at ON patrol_checkins(at);
CREATE INDEX IF NOT EXISTS patrol_checkins_plan ON patrol_checkins(plan_id, at);
CREATE TABLE IF NOT EXISTS hazards (
    hazard_id TEXT PRIMARY KEY,
    checkin_id TEXT,
    plan_id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    community TEXT NOT NULL,
    compound_id TEXT,
    lon REAL,
    lat REAL,
    finding TEXT NOT NULL,
    found_by TEXT NOT NULL,
    found_at TEXT NOT NULL,
    deadline TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'rectified', 'closed')),
    rectified_at TEXT,
    rectified_by TEXT,
    rectify_note TEXT,
    closed_at TEXT,
    closed_by TEXT,
    close_note TEXT,
    photos TEXT
);
CREATE INDEX IF NOT EXISTS hazards_state ON hazards(state, deadline);
CREATE INDEX IF NOT EXISTS hazards_found ON hazards(found_at);
