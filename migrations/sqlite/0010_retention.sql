-- Retention (issue 11): closed orders leave after `retention_days`, seen ids after the
-- replay horizon. The sweep finds them by these indexes; the tracking number of a closed
-- order is found by its order (start-up remembers it, the sweep deletes it).
CREATE INDEX orders_closed ON orders (updated_at) WHERE open = 0;
CREATE INDEX seen_events_at ON seen_events (seen_at);
CREATE INDEX tracking_order ON tracking (order_id);
