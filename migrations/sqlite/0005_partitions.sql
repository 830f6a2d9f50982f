-- Ownership by partition (issue 11): every order, seen id and parked event belongs to one
-- partition of the by-order topic, so that an instance loads only what it owns. Rows from
-- before carry -1: they stay with the instance that owns partition 0 (with SQLite, the one).
ALTER TABLE orders ADD COLUMN part INTEGER NOT NULL DEFAULT -1;
ALTER TABLE seen_events ADD COLUMN part INTEGER NOT NULL DEFAULT -1;
ALTER TABLE parked ADD COLUMN part INTEGER NOT NULL DEFAULT -1;
-- No index on `part`: every seen id and state write would pay for one, and a partition is
-- loaded only when it is assigned (with SQLite's one instance: all of them, at start), by a
-- scan.

-- Which order a tracking number belongs to, and where that order lives: written when the
-- order's warehouse.shipped commits, read by whichever instance consumes the carrier event.
CREATE TABLE tracking (
    tracking_number TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL,
    part            INTEGER NOT NULL
) WITHOUT ROWID;

-- Carrier events whose tracking number no order has shipped with yet: kept until the
-- mapping exists (then routed to the owner) or park_hours pass (then dead-lettered).
CREATE TABLE unrouted (
    event_key       BLOB PRIMARY KEY,
    tracking_number TEXT NOT NULL,
    event           TEXT NOT NULL,
    expires_at      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX unrouted_tracking ON unrouted (tracking_number);

-- Who owns each partition, and since which takeover. Every batch checks its partitions'
-- epochs inside its transaction: an instance the group presumed dead (and whose partitions
-- moved) cannot overwrite the new owner's state.
CREATE TABLE partition_owners (
    part  INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch INTEGER NOT NULL
);
