-- Analysts' notes on an incident. Kept apart from incident_timeline because
-- a comment changes nothing about the incident (no revision bump, no
-- notification); the API shows both, in time order.
CREATE TABLE incident_comments (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    incident_id uuid        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    body        text        NOT NULL,
    CONSTRAINT incident_comments_pkey PRIMARY KEY (id),
    CONSTRAINT incident_comments_incident_id_fkey
        FOREIGN KEY (incident_id) REFERENCES incidents (id) ON DELETE CASCADE,
    CONSTRAINT incident_comments_body_check CHECK (length(body) BETWEEN 1 AND 10000)
);

CREATE INDEX incident_comments_incident_id_id_idx ON incident_comments (incident_id, id);
