-- What happened to an incident, in order: created, updated, escalated, status
-- changes. Written in the same transaction as the change to `incidents`.
CREATE TABLE incident_timeline (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    incident_id uuid        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    revision    integer     NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT incident_timeline_pkey PRIMARY KEY (id),
    CONSTRAINT incident_timeline_incident_id_fkey
        FOREIGN KEY (incident_id) REFERENCES incidents (id) ON DELETE CASCADE
);

CREATE INDEX incident_timeline_incident_id_id_idx ON incident_timeline (incident_id, id);
