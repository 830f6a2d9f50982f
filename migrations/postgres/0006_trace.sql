-- Every order's trace (shared/spec/trace.md): one row per step the engine took, written in
-- the transaction of the batch that took it (`Step::to_stored_json`). Read and deleted by
-- order, in the order the steps were taken: the one index serves both.
CREATE TABLE trace (
    id       bigint GENERATED ALWAYS AS IDENTITY,
    order_id text NOT NULL,
    at       timestamptz NOT NULL,
    step     text NOT NULL
);
CREATE INDEX trace_order ON trace (order_id, id);

-- Orders found by their customer's address or number (the console's search): written when
-- the order's row is inserted; orders stored before this migration get theirs here.
ALTER TABLE orders ADD COLUMN email text, ADD COLUMN phone text;
UPDATE orders SET
    email = lower((state::jsonb) #>> '{customer,email}'),
    phone = regexp_replace((state::jsonb) #>> '{customer,phone}', '[ ./()-]', '', 'g');
CREATE INDEX orders_email ON orders (email);
CREATE INDEX orders_phone ON orders (phone);
-- An id's beginning, compared by code point whatever the database's collation.
CREATE INDEX orders_id_prefix ON orders ((order_id COLLATE "C"));
-- ... and by the recipients of their messages.
CREATE INDEX outbox_recipient ON outbox (lower(recipient));
