-- Every order's trace (shared/spec/trace.md): one row per step the engine took, written in
-- the transaction of the batch that took it (`Step::to_stored_json`). Read and deleted by
-- order, in the order the steps were taken.
CREATE TABLE trace (
    id       INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL,
    at       TEXT NOT NULL,
    step     TEXT NOT NULL
);
CREATE INDEX trace_order ON trace (order_id, id);

-- Orders found by their customer's address or number (the console's search): written when
-- the order's row is inserted; orders stored before this migration get theirs here.
ALTER TABLE orders ADD COLUMN email TEXT;
ALTER TABLE orders ADD COLUMN phone TEXT;
UPDATE orders SET
    email = lower(json_extract(state, '$.customer.email')),
    phone = replace(replace(replace(replace(replace(replace(
        json_extract(state, '$.customer.phone'), ' ', ''), '-', ''), '.', ''), '/', ''), '(', ''), ')', '');
CREATE INDEX orders_email ON orders (email);
CREATE INDEX orders_phone ON orders (phone);
-- ... and by the recipients of their messages.
CREATE INDEX outbox_recipient ON outbox (lower(recipient));
