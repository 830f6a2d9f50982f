-- The console (src/console): who did what and when (a retry, a cancel, a publish), and every
-- dead-lettered event with its reason, kept beside the copy on the dead-letter topic so that
-- ops can read them without a Kafka client.
CREATE TABLE audit (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    who     text NOT NULL,
    action  text NOT NULL,
    subject text NOT NULL,
    detail  text
);

CREATE TABLE dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    topic         text NOT NULL,
    -- -1 (and offset -1) for an event that waited too long: it has no record of its own.
    part          integer NOT NULL,
    record_offset bigint NOT NULL,
    reason        text NOT NULL,
    -- The record's payload as text, cut to 64 KiB (`truncated` says so).
    payload       text,
    truncated     boolean NOT NULL DEFAULT false
);
-- A record dead-lettered again after a crash (its offset was not stored yet) is kept once.
CREATE UNIQUE INDEX dead_letters_once ON dead_letters (topic, part, record_offset) WHERE part >= 0;
CREATE INDEX dead_letters_at ON dead_letters (at);
