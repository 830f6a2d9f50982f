-- belofte's durable state on PostgreSQL: the same tables as migrations/sqlite (0001-0004)
-- in native types. One poll batch = one transaction over them; several instances share it.
-- JSON documents (order states, rendered lines, decisions, parked events) are `text`: they
-- are written and read whole, never queried inside, and jsonb would parse and re-encode
-- each on every write.

-- Every order's engine state (core::engine::OrderState as JSON).
CREATE TABLE orders (
    order_id   text PRIMARY KEY,
    state      text NOT NULL,
    open       boolean NOT NULL,
    updated_at timestamptz NOT NULL
);

-- CloudEvents source+id seen (128-bit key): a replay changes nothing.
CREATE TABLE seen_events (
    event_key bytea PRIMARY KEY,
    seen_at   timestamptz NOT NULL
);

-- Events waiting for their order or tracking number.
CREATE TABLE parked (
    event_key  bytea PRIMARY KEY,
    event      text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Decided messages, drained by the dispatchers of every instance. The notification key
-- makes enqueueing idempotent: a replay cannot add a message twice.
CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_key text NOT NULL UNIQUE,
    order_id         text NOT NULL,
    kind             text NOT NULL,
    channel          text NOT NULL,
    recipient        text,
    send_at          timestamptz NOT NULL,
    line             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    attempts         bigint NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    provider_id      text,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    -- SHA-256 of the notification key, cut to 32 hex digits: the Message-ID's local part
    -- and what a VERP bounce address carries back.
    message_ref      text,
    -- The provider's latest word (Twilio's MessageStatus, or bounced/delayed/complained).
    provider_status  text,
    -- The notice a customer row belongs to, and the decision it was rendered from.
    seq              bigint,
    decision         text,
    -- The lease of the attempt in progress: who, which claim, since and until when (on the
    -- database's clock). A `sending` row whose lease ran out is claimed again as unknown.
    claimed_by       text,
    claims           bigint NOT NULL DEFAULT 0,
    claimed_at       timestamptz,
    lease_until      timestamptz
);
-- The rows a dispatcher can claim, per channel, in the order it claims them.
CREATE INDEX outbox_ready ON outbox (channel, next_attempt_at, id) WHERE status IN ('pending', 'unknown');
-- The rows held for sending, by the end of their lease.
CREATE INDEX outbox_leased ON outbox (channel, lease_until) WHERE status = 'sending';
CREATE INDEX outbox_message_ref ON outbox (message_ref) WHERE message_ref IS NOT NULL;
CREATE INDEX outbox_notice ON outbox (order_id, seq);

-- Every delivery attempt and how it ended.
CREATE TABLE attempts (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id bigint NOT NULL REFERENCES outbox (id),
    at        timestamptz NOT NULL,
    outcome   text NOT NULL,
    detail    text
);
CREATE INDEX attempts_outbox ON attempts (outbox_id);

-- Recipients a provider refused for good (invalid number, opted out): not tried again.
CREATE TABLE suppressions (
    channel   text NOT NULL,
    recipient text NOT NULL,
    reason    text NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (channel, recipient)
);

-- Every provider status that changed something, with its time: the order's timeline.
-- A repeated callback or bounce with the same status is recorded once.
CREATE TABLE provider_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id   bigint NOT NULL REFERENCES outbox (id),
    at          timestamptz NOT NULL,
    -- twilio | bounce | smtp
    source      text NOT NULL,
    status      text NOT NULL,
    error_code  text,
    detail      text
);
CREATE UNIQUE INDEX provider_events_once ON provider_events (outbox_id, source, status);
