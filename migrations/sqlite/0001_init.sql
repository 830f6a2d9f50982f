-- belofte's durable state (SQLite). One event = one transaction over these tables.

-- Every order's engine state, as JSON (core::engine::OrderState).
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    open       INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- CloudEvents source+id seen (128-bit key): a replay changes nothing.
CREATE TABLE seen_events (
    event_key BLOB PRIMARY KEY,
    seen_at   TEXT NOT NULL
) WITHOUT ROWID;

-- Events waiting for their order or tracking number.
CREATE TABLE parked (
    event_key  BLOB PRIMARY KEY,
    event      TEXT NOT NULL,
    expires_at TEXT NOT NULL
) WITHOUT ROWID;

-- Decided messages, drained by the dispatcher. The notification key makes enqueueing
-- idempotent: a replay cannot add a message twice.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_key TEXT NOT NULL UNIQUE,
    order_id         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    channel          TEXT NOT NULL,
    recipient        TEXT,
    send_at          TEXT NOT NULL,
    line             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    provider_id      TEXT,
    created_at       TEXT NOT NULL,
    finished_at      TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Every delivery attempt and how it ended.
CREATE TABLE attempts (
    outbox_id INTEGER NOT NULL REFERENCES outbox (id),
    at        TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX attempts_outbox ON attempts (outbox_id);

-- Recipients a provider refused for good (invalid number, opted out): not tried again.
CREATE TABLE suppressions (
    channel   TEXT NOT NULL,
    recipient TEXT NOT NULL,
    reason    TEXT NOT NULL,
    at        TEXT NOT NULL,
    PRIMARY KEY (channel, recipient)
) WITHOUT ROWID;
