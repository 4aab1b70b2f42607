-- Notifications: one inbox row per person and event, written in the same
-- transaction as its cause. `dedupe` makes an event that several daemons
-- (or passes) see land once: "starts soon" of one start, a warning of one
-- idle spell.
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    reservation_id  uuid,
    dedupe          text,
    title           text NOT NULL CHECK (char_length(title) <= 300),
    body            text NOT NULL DEFAULT '' CHECK (char_length(body) <= 2000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz,
    UNIQUE (user_id, dedupe)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;

-- Deliveries still to make outside the inbox (a webhook, an email, the
-- member's terminals), written with the notification; a delivery is deleted
-- in the transaction that saw it accepted, so it is made once (a crash
-- between the send and the commit sends again, with the same id).
CREATE TABLE notification_outbox (
    id               bigserial PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('webhook', 'lab_webhook', 'email', 'terminal')),
    target           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    failed           boolean NOT NULL DEFAULT false,
    UNIQUE (notification_id, channel)
);
CREATE INDEX notification_outbox_due_idx ON notification_outbox (next_attempt_at) WHERE NOT failed;

-- What each member wants outside the inbox (the inbox gets everything).
CREATE TABLE notification_settings (
    user_id      bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    webhook_url  text CHECK (char_length(webhook_url) <= 500),
    email        boolean NOT NULL DEFAULT false,
    terminal     boolean NOT NULL DEFAULT false,
    -- Event kinds delivered to the inbox only.
    muted        text[] NOT NULL DEFAULT '{}'
);

-- Idle reclaim: what the reclaim worker saw of a running booking.
CREATE TABLE reclaim_state (
    booking_id    uuid PRIMARY KEY,
    -- The last time the owner had a qualifying process on its GPUs.
    last_busy_at  timestamptz,
    -- Since when it has been idle without a gap in the telemetry.
    idle_since    timestamptz,
    warned_at     timestamptz,
    kept_until    timestamptz
);
