-- Usage accounting: what the GPUs really did, written by the daemon of the
-- host that sampled them (so a shared database reports every host).
--
-- A minute is "used" when the holder's Unix user had a qualifying process on
-- the GPU in any trusted sample of it, "idle" when trusted samples showed
-- none, and unknown when no trusted sample exists (a telemetry gap): unknown
-- minutes have no row and are never counted as idle.

-- Per GPU and minute, kept `[usage] keep_minutes_days` (default 90).
CREATE TABLE usage_minutes (
    resource_id     bigint NOT NULL REFERENCES resources (id),
    minute          timestamptz NOT NULL CHECK (date_trunc('minute', minute) = minute),
    -- Who held the GPU in this minute (NULL: nobody).
    reservation_id  uuid,
    -- Trusted samples, and those where the holder ran a qualifying process.
    samples         smallint NOT NULL CHECK (samples > 0),
    used_samples    smallint NOT NULL CHECK (used_samples BETWEEN 0 AND samples),
    util_mean       smallint CHECK (util_mean BETWEEN 0 AND 100),
    util_peak       smallint CHECK (util_peak BETWEEN 0 AND 100),
    mem_peak_mib    integer CHECK (mem_peak_mib >= 0),
    -- Unix users with a qualifying process on a GPU they did not hold.
    unreserved      text[] NOT NULL DEFAULT '{}',
    -- Also what pruning walks, per resource (no second index to pay for).
    PRIMARY KEY (resource_id, minute)
);

-- Per GPU, hour and holder, kept forever: what reports and the per-booking
-- totals read (24 rows per GPU and day at most, more only when the holder
-- changes within an hour).
CREATE TABLE usage_hours (
    resource_id     bigint NOT NULL REFERENCES resources (id),
    hour            timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    reservation_id  uuid,
    used_min        integer NOT NULL DEFAULT 0 CHECK (used_min >= 0),
    idle_min        integer NOT NULL DEFAULT 0 CHECK (idle_min >= 0),
    util_sum        bigint NOT NULL DEFAULT 0,
    util_n          integer NOT NULL DEFAULT 0,
    util_peak       smallint,
    mem_peak_mib    integer,
    CONSTRAINT usage_hours_key UNIQUE NULLS NOT DISTINCT (resource_id, hour, reservation_id)
);
CREATE INDEX usage_hours_hour_idx ON usage_hours (hour);
CREATE INDEX usage_hours_reservation_idx ON usage_hours (reservation_id)
    WHERE reservation_id IS NOT NULL;

-- Per GPU, hour and Unix user: minutes of use on a GPU that user did not
-- hold, kept forever.
CREATE TABLE unreserved_hours (
    resource_id  bigint NOT NULL REFERENCES resources (id),
    hour         timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    unix_user    text NOT NULL,
    minutes      integer NOT NULL CHECK (minutes >= 0),
    PRIMARY KEY (hour, resource_id, unix_user)
);

-- Per reservation, totals forever.
CREATE VIEW reservation_usage AS
    SELECT reservation_id,
           sum(used_min)::bigint AS used_min,
           sum(idle_min)::bigint AS idle_min,
           CASE WHEN sum(util_n) > 0 THEN round(sum(util_sum)::numeric / sum(util_n))::integer END AS util_mean,
           max(util_peak) AS util_peak,
           max(mem_peak_mib) AS mem_peak_mib
      FROM usage_hours
     WHERE reservation_id IS NOT NULL
     GROUP BY reservation_id;

-- A reservation ended before its booked end: the end it had, and who ended
-- it ('release': its owner, an admin or `gpures run`; 'reclaim': idle reclaim).
ALTER TABLE reservations ADD COLUMN booked_end timestamptz;
ALTER TABLE reservations ADD COLUMN ended_by text
    CHECK (ended_by IS NULL OR ended_by IN ('release', 'reclaim'));
