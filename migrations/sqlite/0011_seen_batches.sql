-- Seen event ids as one row per partition per batch (issue 11): the ids of a batch's
-- events, 16 bytes each (big-endian), one after the other. One row of random 16-byte keys
-- per event, with its `seen_at` index, was two random B-tree inserts per event, the larger
-- part of a batch's pages. The worlds hold the seen set in memory and drop duplicates
-- before they reach a batch, so the table is only read back when a partition is assigned
-- and swept after the replay horizon: it needs no index on the key.
CREATE TABLE seen_batches (
    id      INTEGER PRIMARY KEY,
    part    INTEGER NOT NULL,
    seen_at TEXT NOT NULL,
    keys    BLOB NOT NULL CHECK (length(keys) % 16 = 0)
);
CREATE INDEX seen_batches_part ON seen_batches (part, seen_at);
-- Each id seen before becomes a batch of one, with its time, so the sweep keeps it as long.
INSERT INTO seen_batches (part, seen_at, keys) SELECT part, seen_at, event_key FROM seen_events ORDER BY seen_at;
DROP TABLE seen_events;
