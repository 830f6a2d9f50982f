-- Live wording and render at send: migrations/sqlite/0008_wording.sql in native types.
CREATE TABLE wording_versions (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind   text NOT NULL,
    name   text NOT NULL,
    body   text NOT NULL,
    author text NOT NULL,
    at     timestamptz NOT NULL,
    note   text NOT NULL DEFAULT '',
    diff   text NOT NULL DEFAULT ''
);
CREATE INDEX wording_versions_doc ON wording_versions (kind, name, id);

ALTER TABLE outbox ADD COLUMN unrendered boolean NOT NULL DEFAULT false;
ALTER TABLE outbox ADD COLUMN wording bigint;
CREATE INDEX outbox_render_failed ON outbox (id) WHERE status = 'render_failed';
