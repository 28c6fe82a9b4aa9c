-- The notification outbox: one row per (channel, incident change) to deliver,
-- inserted in the transaction that records the change, so a crash loses no
-- notification. Statuses:
--   pending   waiting for (or between) delivery attempts; next_attempt_at is
--             when it may be claimed. A claim moves next_attempt_at one lease
--             ahead, so a worker that dies mid-send leaves a row that becomes
--             claimable again when the lease runs out.
--   held      over the channel's rate limit: waits for a digest.
--   digested  summarised by the digest row digest_id (never sent alone).
--   delivered sent; kept for the record.
--   dead      gave up (too many attempts or a permanent error): the dead
--             letters, listed by the API and re-queueable.
-- delivery_id is the idempotency key every send carries.
CREATE TABLE notification_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    delivery_id     uuid        NOT NULL,
    channel         text        NOT NULL,
    event           text        NOT NULL,
    incident_id     uuid,
    revision        integer,
    kind            text,
    severity        text,
    client          text,
    thread_first    boolean     NOT NULL DEFAULT false,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    claim_token     uuid,
    claimed_by      text,
    last_error      text,
    digest_id       bigint,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    CONSTRAINT notification_outbox_pkey PRIMARY KEY (id),
    CONSTRAINT notification_outbox_delivery_id_key UNIQUE (delivery_id),
    CONSTRAINT notification_outbox_status_check
        CHECK (status IN ('pending', 'held', 'digested', 'delivered', 'dead')),
    CONSTRAINT notification_outbox_attempts_check CHECK (attempts >= 0 AND max_attempts >= 1)
);

-- The claim: due pending rows, oldest first.
CREATE INDEX notification_outbox_due_idx ON notification_outbox (next_attempt_at, id)
    WHERE status = 'pending';
-- Held rows per channel (digests), dead letters, and email threading
-- ("has this incident been mailed on this channel before").
CREATE INDEX notification_outbox_channel_status_id_idx ON notification_outbox (channel, status, id);
CREATE INDEX notification_outbox_status_id_idx ON notification_outbox (status, id);
CREATE INDEX notification_outbox_channel_incident_id_idx ON notification_outbox (channel, incident_id);

-- Per-channel token bucket of the flood control, shared by every instance:
-- tokens are thousandths of a message, refilled by wall-clock time.
CREATE TABLE notification_channel_state (
    channel      text        NOT NULL,
    tokens_milli bigint      NOT NULL,
    refilled_at  timestamptz NOT NULL,
    CONSTRAINT notification_channel_state_pkey PRIMARY KEY (channel)
);
