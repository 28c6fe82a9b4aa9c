-- Administrative changes that are not incident changes (those are in
-- incident_timeline): tokens created and revoked, suppression rules created
-- and deleted, dead letters requeued. Who (the API token, or the command
-- line) did what to which object, and when. Append-only.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL
);
