-- Incidents: one row per attack, named by its fingerprint.
-- Times are TEXT in RFC 3339 UTC with exactly three fractional digits and a
-- `Z` (2026-11-23T08:31:06.123Z), so that text order is time order.
-- Event times (first_seen, last_seen, detected_at) come from the logs;
-- created_at/updated_at are the database's wall clock.
CREATE TABLE incidents (
    id          TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    technique   TEXT    NOT NULL,
    client      TEXT    NOT NULL,
    sources     TEXT    NOT NULL DEFAULT '[]',
    first_seen  TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL,
    detected_at TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'open',
    summary     TEXT    NOT NULL,
    evidence    TEXT    NOT NULL DEFAULT '{}',
    events      INTEGER NOT NULL DEFAULT 0,
    revision    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT incidents_pkey PRIMARY KEY (id),
    CONSTRAINT incidents_fingerprint_key UNIQUE (fingerprint),
    CONSTRAINT incidents_seen_check CHECK (first_seen <= last_seen),
    CONSTRAINT incidents_events_check CHECK (events >= 0),
    CONSTRAINT incidents_revision_check CHECK (revision >= 0),
    CONSTRAINT incidents_sources_check CHECK (json_valid(sources)),
    CONSTRAINT incidents_evidence_check CHECK (json_valid(evidence))
);

-- The default listing: newest activity first, (last_seen, id) is the cursor.
CREATE INDEX incidents_last_seen_id_idx ON incidents (last_seen DESC, id DESC);
CREATE INDEX incidents_status_last_seen_idx ON incidents (status, last_seen DESC);
CREATE INDEX incidents_kind_last_seen_idx ON incidents (kind, last_seen DESC);
-- Serves both the client filter and the manager's "latest incident of this
-- kind for this client" lookup.
CREATE INDEX incidents_client_kind_last_seen_idx ON incidents (client, kind, last_seen DESC);
