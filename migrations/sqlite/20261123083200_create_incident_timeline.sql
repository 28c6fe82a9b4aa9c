-- What happened to an incident, in order: created, updated, escalated, status
-- changes. Written in the same transaction as the change to `incidents`.
CREATE TABLE incident_timeline (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT    NOT NULL,
    at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}',
    CONSTRAINT incident_timeline_incident_id_fkey
        FOREIGN KEY (incident_id) REFERENCES incidents (id) ON DELETE CASCADE,
    CONSTRAINT incident_timeline_details_check CHECK (json_valid(details))
);

CREATE INDEX incident_timeline_incident_id_id_idx ON incident_timeline (incident_id, id);
