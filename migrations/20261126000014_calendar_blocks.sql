-- Maintenance and blackout windows are mirrored into Google Calendar too:
-- one event per block (all the resources blocked together), its id derived
-- from `block_id` as a reservation's is from its id. An outbox row now names
-- either a reservation or a block.
ALTER TABLE calendar_outbox ALTER COLUMN reservation_id DROP NOT NULL;
ALTER TABLE calendar_outbox ADD COLUMN block_id uuid;
ALTER TABLE calendar_outbox ADD CONSTRAINT calendar_outbox_one_subject
    CHECK ((reservation_id IS NULL) <> (block_id IS NULL));
CREATE INDEX calendar_outbox_block_idx ON calendar_outbox (block_id)
    WHERE block_id IS NOT NULL;
