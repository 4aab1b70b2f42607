-- Approval requests: a booking past lab policy that a member asked an admin
-- to allow. It is an active reservation (so the exclusion constraint keeps
-- its slot from everyone else) with `pending_until` set: an admin approves
-- it (the column is cleared) or denies it (cancelled), and one nobody
-- decided by then is cancelled. The deadline is never after its start.
ALTER TABLE reservations ADD COLUMN pending_until timestamptz;
ALTER TABLE reservations ADD COLUMN pending_reason text
    CHECK (pending_reason IS NULL OR char_length(pending_reason) <= 500);
CREATE INDEX reservations_pending_idx ON reservations (pending_until)
    WHERE pending_until IS NOT NULL AND status = 'active';
