-- Administrative changes that are not incident changes (those are in
-- incident_timeline): tokens created and revoked, suppression rules created
-- and deleted, dead letters requeued. Who (the API token, or the command
-- line) did what to which object, and when. Append-only.
CREATE TABLE audit_log (
    id     bigint      GENERATED ALWAYS AS IDENTITY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text        NOT NULL,
    action text        NOT NULL,
    target text        NOT NULL,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id)
);
