-- A seen event id belongs to the partition whose world saw it, and an incident is seen by
-- every partition (migrations/postgres/0003_seen_per_partition.sql): keyed by the id alone,
-- only the first partition's row was kept, and a replayed copy was applied again in the
-- others after a restart. SQLite cannot change a primary key: the table is rebuilt.
CREATE TABLE seen_events_by_part (
    part      INTEGER NOT NULL,
    event_key BLOB NOT NULL,
    seen_at   TEXT NOT NULL,
    PRIMARY KEY (part, event_key)
) WITHOUT ROWID;
INSERT INTO seen_events_by_part (part, event_key, seen_at) SELECT part, event_key, seen_at FROM seen_events;
DROP TABLE seen_events;
ALTER TABLE seen_events_by_part RENAME TO seen_events;
