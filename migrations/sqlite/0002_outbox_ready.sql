-- The rows a dispatcher can claim, per channel, in the order it claims them. The claim
-- query's WHERE repeats this index's, so SQLite reads the first LIMIT entries and stops;
-- with outbox_due alone it gathered and sorted every pending row of the outbox on each
-- claim (most of the dispatcher's time once thousands were queued).
CREATE INDEX outbox_ready ON outbox (channel, next_attempt_at, id) WHERE status IN ('pending', 'unknown');
