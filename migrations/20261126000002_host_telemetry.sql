-- The latest GPU sample of each host, written by that host's daemon, so that
-- every daemon sharing the database can show every host's GPUs.
CREATE TABLE host_telemetry (
    host        text PRIMARY KEY,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    record      jsonb NOT NULL
);
