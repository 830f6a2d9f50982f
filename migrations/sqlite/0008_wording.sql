-- Live wording (issue 13): templates and brands as versioned documents. Every publish is a
-- new row (AUTOINCREMENT: an id is never reused, so it is the wording's version number);
-- a rollback publishes an earlier body again. The latest row per (kind, name) is current.
CREATE TABLE wording_versions (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    -- template | brand
    kind   TEXT NOT NULL,
    -- a template's path under templates/, or a brand id
    name   TEXT NOT NULL,
    body   TEXT NOT NULL,
    author TEXT NOT NULL,
    at     TEXT NOT NULL,
    note   TEXT NOT NULL DEFAULT '',
    -- against the version before (the shipped file or configured brand for the first)
    diff   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX wording_versions_doc ON wording_versions (kind, name, id);

-- Render at send (issue 11): a customer row keeps its decision (`decision`) and gets its
-- words when a dispatcher claims it, with the wording current then. `unrendered` until
-- then; `wording` is the version the words were rendered with. A row that cannot be
-- rendered is `render_failed` (reason in last_error) until the wording changes.
ALTER TABLE outbox ADD COLUMN unrendered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN wording INTEGER;
CREATE INDEX outbox_render_failed ON outbox (id) WHERE status = 'render_failed';
