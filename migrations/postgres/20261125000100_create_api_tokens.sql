-- Bearer tokens for the incident API and web page. Only the SHA-256 of a
-- token is kept (hex): the token itself is shown once, when it is created.
-- A revoked token stays listed (who had access, until when) but no longer
-- authenticates.
CREATE TABLE api_tokens (
    id           uuid        NOT NULL,
    name         text        NOT NULL,
    role         text        NOT NULL,
    token_sha256 text        NOT NULL,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT api_tokens_name_key UNIQUE (name),
    CONSTRAINT api_tokens_token_sha256_key UNIQUE (token_sha256),
    CONSTRAINT api_tokens_role_check CHECK (role IN ('viewer', 'analyst', 'admin'))
);
