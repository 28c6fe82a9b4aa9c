-- Requests per client per minute of event time, written by the pipeline for
-- clients that have (or just got) an incident, so the API and the web page can
-- draw a client's traffic against its baseline. Not every client: the table
-- stays as small as the incidents are few. Old rows are pruned by age.
CREATE TABLE client_activity (
    client   TEXT    NOT NULL,
    minute   TEXT    NOT NULL,
    events   INTEGER NOT NULL,
    CONSTRAINT client_activity_pkey PRIMARY KEY (client, minute),
    CONSTRAINT client_activity_events_check CHECK (events >= 0)
);

CREATE INDEX client_activity_minute_idx ON client_activity (minute);
