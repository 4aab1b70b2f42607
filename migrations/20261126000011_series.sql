-- Recurring bookings: each occurrence is an ordinary reservation (its own
-- booking, calendar event and policy check); `series_id` ties the
-- occurrences of one `gpures book --every` together, so that "this and the
-- following" can be cancelled as one.
ALTER TABLE reservations ADD COLUMN series_id uuid;
CREATE INDEX reservations_series_idx ON reservations (series_id, lower(period))
    WHERE series_id IS NOT NULL;
