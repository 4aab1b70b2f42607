-- The fair queue: "N GPUs of one host for this long, as soon as they free".
-- Granted first come first served (a later request only if it ends before
-- the head could start), exactly once: the granting daemon locks the row and
-- books in the same transaction, with the request's id as the booking's
-- request id.
CREATE TABLE queue_requests (
    id              uuid PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    gpus            integer NOT NULL CHECK (gpus BETWEEN 1 AND 64),
    length_minutes  integer NOT NULL CHECK (length_minutes >= 1),
    host            text,
    -- Give up if not granted by then.
    until           timestamptz,
    note            text NOT NULL DEFAULT '' CHECK (char_length(note) <= 500),
    state           text NOT NULL DEFAULT 'waiting'
                        CHECK (state IN ('waiting', 'granted', 'cancelled', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- When it left the queue (granted, cancelled or expired).
    ended_at        timestamptz,
    booking_id      uuid
);
CREATE INDEX queue_requests_waiting_idx ON queue_requests (created_at) WHERE state = 'waiting';
CREATE INDEX queue_requests_user_idx ON queue_requests (user_id, created_at);
