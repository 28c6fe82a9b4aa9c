-- Who is working an incident (a login, free text; NULL when nobody). Set by
-- analysts through the API; the manager's merges keep it.
ALTER TABLE incidents ADD COLUMN assignee TEXT;

CREATE INDEX incidents_assignee_last_seen_idx ON incidents (assignee, last_seen DESC)
    WHERE assignee IS NOT NULL;
