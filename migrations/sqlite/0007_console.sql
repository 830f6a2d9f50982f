-- The console (src/console): who did what and when (a retry, a cancel, a publish), and every
-- dead-lettered event with its reason, kept beside the copy on the dead-letter topic so that
-- ops can read them without a Kafka client.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    who     TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT
);

CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    topic         TEXT NOT NULL,
    -- -1 (and offset -1) for an event that waited too long: it has no record of its own.
    part          INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    -- The record's payload as text, cut to 64 KiB (`truncated` says so).
    payload       TEXT,
    truncated     INTEGER NOT NULL DEFAULT 0
);
-- A record dead-lettered again after a crash (its offset was not stored yet) is kept once.
CREATE UNIQUE INDEX dead_letters_once ON dead_letters (topic, part, record_offset) WHERE part >= 0;
CREATE INDEX dead_letters_at ON dead_letters (at);
