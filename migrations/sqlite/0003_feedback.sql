-- Delivery feedback (issue 14): what became of a message after the provider took it.

-- The message's reference: SHA-256 of the notification key, cut to 32 hex digits. It is the
-- local part of the email's Message-ID and what a VERP bounce address carries back, so a
-- bounce finds its row by it. Filled for every row enqueued from now on.
ALTER TABLE outbox ADD COLUMN message_ref TEXT;
CREATE INDEX outbox_message_ref ON outbox (message_ref) WHERE message_ref IS NOT NULL;

-- The provider's latest word on the message (Twilio's MessageStatus, or `bounced`,
-- `delayed`, `complained` for email). `status` stays the dispatcher's view, except that a
-- final failure reported later (undelivered SMS, bounced email) turns a `sent` row `failed`.
ALTER TABLE outbox ADD COLUMN provider_status TEXT;

-- The notice a customer row belongs to (the last segment of its key), and the decision it
-- was rendered from (core::engine::Decision as JSON): a fallback on the other channel is
-- rendered from the same facts.
ALTER TABLE outbox ADD COLUMN seq INTEGER;
ALTER TABLE outbox ADD COLUMN decision TEXT;
CREATE INDEX outbox_notice ON outbox (order_id, seq);

-- Every provider status that changed something, with its time: the order's timeline.
-- A repeated callback or bounce with the same status is recorded once.
CREATE TABLE provider_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    at          TEXT NOT NULL,
    -- twilio | bounce | smtp
    source      TEXT NOT NULL,
    status      TEXT NOT NULL,
    error_code  TEXT,
    detail      TEXT
);
CREATE UNIQUE INDEX provider_events_once ON provider_events (outbox_id, source, status);
