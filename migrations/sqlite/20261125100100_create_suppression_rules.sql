-- Suppression rules: findings matching every set matcher of a rule are muted
-- (no incident change, no notification) and counted, never silently dropped.
-- At least one matcher must be set; expires_at is wall-clock time.
CREATE TABLE suppression_rules (
    id           TEXT    NOT NULL,
    client_cidr  TEXT,
    client_key   TEXT,
    kind         TEXT,
    path_pattern TEXT,
    expires_at   TEXT,
    created_by   TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    hits         INTEGER NOT NULL DEFAULT 0,
    last_hit_at  TEXT,
    CONSTRAINT suppression_rules_pkey PRIMARY KEY (id),
    CONSTRAINT suppression_rules_hits_check CHECK (hits >= 0),
    CONSTRAINT suppression_rules_matcher_check CHECK (
        client_cidr IS NOT NULL OR client_key IS NOT NULL
        OR kind IS NOT NULL OR path_pattern IS NOT NULL
    )
);

-- Counters that outlive the rows they count (a deleted rule's hits stay in
-- the total). One row per counter name.
CREATE TABLE alerting_counters (
    name  TEXT    NOT NULL,
    value INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT alerting_counters_pkey PRIMARY KEY (name)
);
