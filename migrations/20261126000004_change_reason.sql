-- Why an admin or the host admin cancelled or ended a reservation (for
-- example when the account was disabled); shown to its owner.
ALTER TABLE reservations
    ADD COLUMN change_reason text CHECK (char_length(change_reason) <= 500);
