-- Incidents: one row per attack, named by its fingerprint.
-- Event times (first_seen, last_seen, detected_at) come from the logs;
-- created_at/updated_at are the database's wall clock.
CREATE TABLE incidents (
    id          uuid        NOT NULL,
    fingerprint text        NOT NULL,
    kind        text        NOT NULL,
    technique   text        NOT NULL,
    client      text        NOT NULL,
    sources     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    severity    text        NOT NULL,
    status      text        NOT NULL DEFAULT 'open',
    summary     text        NOT NULL,
    evidence    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    events      bigint      NOT NULL DEFAULT 0,
    revision    integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT incidents_pkey PRIMARY KEY (id),
    CONSTRAINT incidents_fingerprint_key UNIQUE (fingerprint),
    CONSTRAINT incidents_seen_check CHECK (first_seen <= last_seen),
    CONSTRAINT incidents_events_check CHECK (events >= 0),
    CONSTRAINT incidents_revision_check CHECK (revision >= 0)
);

-- The default listing: newest activity first, (last_seen, id) is the cursor.
CREATE INDEX incidents_last_seen_id_idx ON incidents (last_seen DESC, id DESC);
CREATE INDEX incidents_status_last_seen_idx ON incidents (status, last_seen DESC);
CREATE INDEX incidents_kind_last_seen_idx ON incidents (kind, last_seen DESC);
-- Serves both the client filter and the manager's "latest incident of this
-- kind for this client" lookup.
CREATE INDEX incidents_client_kind_last_seen_idx ON incidents (client, kind, last_seen DESC);
