-- Bearer tokens for the incident API and web page. Only the SHA-256 of a
-- token is kept (hex): the token itself is shown once, when it is created.
-- A revoked token stays listed (who had access, until when) but no longer
-- authenticates.
CREATE TABLE api_tokens (
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_used_at TEXT,
    revoked_at   TEXT,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT api_tokens_name_key UNIQUE (name),
    CONSTRAINT api_tokens_token_sha256_key UNIQUE (token_sha256),
    CONSTRAINT api_tokens_role_check CHECK (role IN ('viewer', 'analyst', 'admin'))
);
