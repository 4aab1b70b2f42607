-- `gpures run --gpus N` ties a booking to the processes it started: the
-- client and its command, by pid and start time (so a reused pid is not
-- mistaken for them). When none of them is alive on the booking's host, that
-- host's daemon releases the booking (the client was killed or its SSH
-- session dropped before it could).
CREATE TABLE booking_jobs (
    booking_id  uuid PRIMARY KEY,
    host        text NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id),
    pids        integer[] NOT NULL,
    -- Start times in clock ticks since boot (/proc/<pid>/stat, field 22).
    starts      bigint[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_jobs_host_idx ON booking_jobs (host);
