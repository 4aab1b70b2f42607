-- Lab policy: groups of members, and rules that limit what a member may
-- book. Every rule is checked inside the booking transaction, after the
-- member's `users` row is locked, so two concurrent bookings of one member
-- cannot both squeeze under a quota (see service::policy).

CREATE TABLE groups (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    description  text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- Group names are unique whatever their case.
CREATE UNIQUE INDEX groups_name_lower_key ON groups (lower(name));

CREATE TABLE group_members (
    group_id  bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id   bigint NOT NULL REFERENCES users (id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);

-- One row per rule and scope. `value` is minutes for the time rules
-- (gpu-hours-week counts GPU-minutes) and a count for max-gpus and
-- max-future. `host` limits a rule to the resources of one host (and counts
-- only those); NULL applies it to every host.
CREATE TABLE policies (
    id          bigserial PRIMARY KEY,
    rule        text NOT NULL CHECK (rule IN
                    ('max-gpus', 'gpu-hours-week', 'max-length', 'horizon', 'max-future', 'cooldown')),
    scope       text NOT NULL CHECK (scope IN ('everyone', 'group', 'user')),
    group_id    bigint REFERENCES groups (id) ON DELETE CASCADE,
    user_id     bigint REFERENCES users (id),
    host        text,
    value       bigint NOT NULL CHECK (value >= 0),
    -- cooldown: a reservation at least this many minutes long is followed
    -- by `value` minutes in which its owner cannot start another.
    threshold   bigint CHECK (threshold >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'group') = (group_id IS NOT NULL)),
    CHECK ((scope = 'user') = (user_id IS NOT NULL)),
    CHECK ((rule = 'cooldown') = (threshold IS NOT NULL)),
    UNIQUE NULLS NOT DISTINCT (rule, scope, group_id, user_id, host)
);

-- The policy check counts one member's reservations around a booking and
-- those not over yet: an index on (member, period) keeps that cheap however
-- long the member's history grows.
CREATE INDEX reservations_user_period_idx ON reservations USING gist (user_id, period)
    WHERE status = 'active';
