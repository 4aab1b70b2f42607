-- gpures schema, version 1. See docs/ARCHITECTURE.md for why each piece exists.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    email          text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    display_name   text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 64),
    password_hash  text NOT NULL,
    role           text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    -- The Unix account the user registered from: tokens work only from it.
    unix_user      text NOT NULL,
    -- Bumped to revoke every token issued so far.
    token_version  integer NOT NULL DEFAULT 1,
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE resources (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 64),
    host         text NOT NULL DEFAULT '',
    kind         text NOT NULL CHECK (kind IN ('gpu', 'server')),
    gpu_index    integer CHECK (gpu_index >= 0),
    gpu_uuid     text,
    description  text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservations (
    id           uuid PRIMARY KEY,
    -- Groups the reservations of one multi-GPU booking.
    booking_id   uuid NOT NULL,
    -- The client's id for the booking attempt: a retry returns the same rows.
    request_id   uuid,
    user_id      bigint NOT NULL REFERENCES users (id),
    resource_id  bigint NOT NULL REFERENCES resources (id),
    period       tstzrange NOT NULL CHECK (
                     NOT isempty(period)
                     AND NOT lower_inf(period) AND NOT upper_inf(period)
                     AND lower_inc(period) AND NOT upper_inc(period)
                 ),
    note         text NOT NULL DEFAULT '' CHECK (char_length(note) <= 500),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Invariant 1: no two active reservations of one resource overlap.
    CONSTRAINT reservations_no_overlap
        EXCLUDE USING gist (resource_id WITH =, period WITH &&) WHERE (status = 'active')
);
-- Window queries over every resource (timeline, listings with history).
CREATE INDEX reservations_period_idx ON reservations USING gist (period);
CREATE INDEX reservations_booking_idx ON reservations (booking_id);
CREATE INDEX reservations_user_idx ON reservations (user_id);
CREATE UNIQUE INDEX reservations_request_key
    ON reservations (user_id, request_id, resource_id) WHERE request_id IS NOT NULL;

-- One row per change still to be mirrored into Google Calendar. Written in the
-- same transaction as the change; the calendar worker deletes a row once the
-- calendar holds the reservation's latest state.
CREATE TABLE calendar_outbox (
    id               bigserial PRIMARY KEY,
    reservation_id   uuid NOT NULL REFERENCES reservations (id),
    operation        text NOT NULL CHECK (operation IN ('upsert', 'delete')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    failed           boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calendar_outbox_due_idx ON calendar_outbox (next_attempt_at);
CREATE INDEX calendar_outbox_reservation_idx ON calendar_outbox (reservation_id);

CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    -- NULL when the host admin acted through `gpures-daemon` on the host.
    actor_id         bigint REFERENCES users (id),
    actor_unix_user  text NOT NULL,
    action           text NOT NULL,
    reservation_id   uuid,
    resource_id      bigint,
    target_user_id   bigint,
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
