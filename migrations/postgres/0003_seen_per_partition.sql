-- A seen event id belongs to the partition whose world saw it, and an incident is seen by
-- every partition. Keyed by the id alone, only the first partition's row was kept: the next
-- owner of any other partition did not know the incident and applied a replayed copy again.
ALTER TABLE seen_events DROP CONSTRAINT seen_events_pkey;
ALTER TABLE seen_events ADD PRIMARY KEY (part, event_key);
-- The primary key now serves the loads by partition.
DROP INDEX seen_events_part;
