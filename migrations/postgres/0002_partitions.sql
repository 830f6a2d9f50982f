-- Ownership by partition (migrations/sqlite/0005_partitions.sql, in native types): every
-- order, seen id and parked event belongs to one partition of the by-order topic, so that
-- an instance loads only what it owns.
ALTER TABLE orders ADD COLUMN part integer NOT NULL DEFAULT -1;
ALTER TABLE seen_events ADD COLUMN part integer NOT NULL DEFAULT -1;
ALTER TABLE parked ADD COLUMN part integer NOT NULL DEFAULT -1;
CREATE INDEX orders_part ON orders (part);
CREATE INDEX seen_events_part ON seen_events (part);
CREATE INDEX parked_part ON parked (part);

-- Which order a tracking number belongs to, and where that order lives: written when the
-- order's warehouse.shipped commits, read by whichever instance consumes the carrier event.
CREATE TABLE tracking (
    tracking_number text PRIMARY KEY,
    order_id        text NOT NULL,
    part            integer NOT NULL
);

-- Carrier events whose tracking number no order has shipped with yet.
CREATE TABLE unrouted (
    event_key       bytea PRIMARY KEY,
    tracking_number text NOT NULL,
    event           text NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX unrouted_tracking ON unrouted (tracking_number);
CREATE INDEX unrouted_expires ON unrouted (expires_at);

-- Who owns each partition, and since which take-over: each batch locks and checks its
-- partitions' rows, so an instance presumed dead cannot overwrite the new owner's state.
CREATE TABLE partition_owners (
    part  integer PRIMARY KEY,
    owner text NOT NULL,
    epoch bigint NOT NULL
);
