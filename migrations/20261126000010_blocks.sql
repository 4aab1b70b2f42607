-- Maintenance and blackout windows: an admin blocks resources for a period
-- with a reason, and nobody can book into it. Checked in every booking
-- transaction after the resources are locked (block creation takes the same
-- locks), so a booking and a block cannot pass each other.
CREATE TABLE blocks (
    id           bigserial PRIMARY KEY,
    -- Shared by the resources blocked together.
    block_id     uuid NOT NULL,
    resource_id  bigint NOT NULL REFERENCES resources (id),
    period       tstzrange NOT NULL CHECK (
                     NOT isempty(period) AND NOT lower_inf(period) AND NOT upper_inf(period)
                 ),
    reason       text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when an admin lifts it; kept for the audit trail.
    removed_at   timestamptz
);
CREATE INDEX blocks_resource_period_idx ON blocks USING gist (resource_id, period)
    WHERE removed_at IS NULL;
CREATE INDEX blocks_block_idx ON blocks (block_id);
