-- The reservations whose Google Calendar event this database knows to exist,
-- so that a change is written as an update straight away instead of an
-- insert that Google refuses with 409 first. Written by the calendar worker
-- after Google accepted; a hint only (an update answered 404 falls back to an
-- insert).
CREATE TABLE calendar_events (
    reservation_id  uuid PRIMARY KEY REFERENCES reservations (id),
    written_at      timestamptz NOT NULL DEFAULT now()
);
