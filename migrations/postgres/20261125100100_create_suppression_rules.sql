-- Suppression rules: findings matching every set matcher of a rule are muted
-- (no incident change, no notification) and counted, never silently dropped.
-- At least one matcher must be set; expires_at is wall-clock time.
CREATE TABLE suppression_rules (
    id           uuid        NOT NULL,
    client_cidr  text,
    client_key   text,
    kind         text,
    path_pattern text,
    expires_at   timestamptz,
    created_by   text        NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    hits         bigint      NOT NULL DEFAULT 0,
    last_hit_at  timestamptz,
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
    name  text   NOT NULL,
    value bigint NOT NULL DEFAULT 0,
    CONSTRAINT alerting_counters_pkey PRIMARY KEY (name)
);
