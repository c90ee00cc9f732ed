-- Dispatches (派单): an alert assigned to a team or to one of its members, with a deadline. The
-- assignee's steps (accepted, arrived, feedback) change this row and are also written to the
-- alert's append-only timeline in the same transaction.
CREATE TABLE dispatches (
    dispatch_id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    team_name TEXT NOT NULL,
    team_type TEXT NOT NULL,
    member_id TEXT,
    assignee TEXT NOT NULL,
    contacts TEXT,
    deadline TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    note TEXT,
    state TEXT NOT NULL DEFAULT 'sent',
    accepted_at TEXT,
    arrived_at TEXT,
    done_at TEXT,
    escalated_at TEXT,
    cause TEXT,
    action_taken TEXT,
    feedback TEXT,
    photos TEXT
);
CREATE INDEX dispatches_alert ON dispatches(alert_id);
CREATE INDEX dispatches_state ON dispatches(state, deadline);
