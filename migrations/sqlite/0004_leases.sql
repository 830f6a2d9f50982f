-- Claims with a lease (issue 11): a row being sent says who sends it and until when. A
-- `sending` row whose lease ran out is claimed again as `unknown` (its attempt's outcome is
-- not known), by any instance; nothing at start-up touches a row whose lease is live.
-- Lease times are on the database's clock, as `strftime('%Y-%m-%dT%H:%M:%fZ')` text.

-- The instance that claimed the row last (`kafka.group_instance_id`, else host:pid).
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
-- How many times the row was claimed: a settle names the claim it ends, so that a late
-- settle of a lease taken over since changes nothing.
ALTER TABLE outbox ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
-- When the current attempt began, and until when it is held.
ALTER TABLE outbox ADD COLUMN claimed_at TEXT;
ALTER TABLE outbox ADD COLUMN lease_until TEXT;

-- Rows left `sending` by a version without leases: their lease has run out.
UPDATE outbox SET lease_until = '1970-01-01T00:00:00.000Z' WHERE status = 'sending';

-- The rows held for sending, per channel, by the end of their lease: the claim reads the
-- expired ones first.
CREATE INDEX outbox_leased ON outbox (channel, lease_until) WHERE status = 'sending';
