//! `notifications` (each member's inbox), `notification_outbox` (deliveries
//! still to make to webhooks, email and terminals) and
//! `notification_settings` (where a member wants them).

use chrono::{DateTime, Utc};
use gpures_proto::{Notification, NotificationKind};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Result, StoreError};

/// An inbox entry to write.
#[derive(Clone, Debug)]
pub struct New {
    pub user_id: i64,
    pub kind: NotificationKind,
    pub reservation_id: Option<Uuid>,
    /// Makes the same event land once per member (`None`: always lands).
    pub dedupe: Option<String>,
    pub title: String,
    pub body: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    reservation_id: Option<Uuid>,
    title: String,
    body: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

fn kind_of(s: &str) -> Result<NotificationKind> {
    NotificationKind::parse(s).ok_or_else(|| {
        StoreError::Other(sqlx::Error::Decode(
            format!("unknown notification kind {s:?}").into(),
        ))
    })
}

impl Row {
    fn into_notification(self) -> Result<Notification> {
        Ok(Notification {
            id: self.id,
            kind: kind_of(&self.kind)?,
            reservation_id: self.reservation_id,
            title: self.title,
            body: self.body,
            created_at: self.created_at,
            read: self.read_at.is_some(),
        })
    }
}

/// Writes an entry; `None` when its `dedupe` key was already used.
pub async fn insert(conn: &mut PgConnection, new: &New) -> Result<Option<Notification>> {
    let row: Option<Row> = sqlx::query_as(
        "INSERT INTO notifications (user_id, kind, reservation_id, dedupe, title, body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id, dedupe) DO NOTHING
         RETURNING id, kind, reservation_id, title, body, created_at, read_at",
    )
    .bind(new.user_id)
    .bind(new.kind.as_str())
    .bind(new.reservation_id)
    .bind(&new.dedupe)
    .bind(&new.title)
    .bind(&new.body)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(Row::into_notification).transpose()
}

/// The newest `limit` entries of a member (only unread ones if asked).
pub async fn newest(
    conn: &mut PgConnection,
    user_id: i64,
    unread_only: bool,
    limit: i64,
) -> Result<Vec<Notification>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, kind, reservation_id, title, body, created_at, read_at FROM notifications
         WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL) ORDER BY id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(unread_only)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(Row::into_notification).collect()
}

pub async fn unread(conn: &mut PgConnection, user_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Marks a member's unread entries up to `up_to` read; how many were.
pub async fn mark_read(conn: &mut PgConnection, user_id: i64, up_to: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE notifications SET read_at = now()
         WHERE user_id = $1 AND id <= $2 AND read_at IS NULL",
    )
    .bind(user_id)
    .bind(up_to)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// A member's channels.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct Settings {
    pub webhook_url: Option<String>,
    pub email: bool,
    pub terminal: bool,
    pub muted: Vec<String>,
}

/// A member's channels (the defaults when never set).
pub async fn settings(conn: &mut PgConnection, user_id: i64) -> Result<Settings> {
    Ok(sqlx::query_as(
        "SELECT webhook_url, email, terminal, muted FROM notification_settings WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or_default())
}

pub async fn save_settings(conn: &mut PgConnection, user_id: i64, s: &Settings) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_settings (user_id, webhook_url, email, terminal, muted)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id) DO UPDATE SET webhook_url = $2, email = $3, terminal = $4, muted = $5",
    )
    .bind(user_id)
    .bind(&s.webhook_url)
    .bind(s.email)
    .bind(s.terminal)
    .bind(&s.muted)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `notification_outbox.channel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Channel {
    Webhook,
    LabWebhook,
    Email,
    Terminal,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::LabWebhook => "lab_webhook",
            Channel::Email => "email",
            Channel::Terminal => "terminal",
        }
    }
}

/// Queues a delivery of notification `id`.
pub async fn enqueue(
    conn: &mut PgConnection,
    id: i64,
    channel: Channel,
    target: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_outbox (notification_id, channel, target) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(channel)
    .bind(target)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A due delivery, locked by the claiming transaction.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Due {
    pub id: i64,
    pub notification_id: i64,
    pub channel: Channel,
    pub target: String,
    pub attempts: i32,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub reservation_id: Option<Uuid>,
    pub email: String,
    pub display_name: String,
    pub unix_user: String,
}

/// Locks up to `limit` due deliveries that no other daemon holds.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<Due>> {
    Ok(sqlx::query_as(
        "SELECT o.id, o.notification_id, o.channel, o.target, o.attempts, n.kind, n.title, n.body,
                n.created_at, n.reservation_id, u.email, u.display_name, u.unix_user
         FROM notification_outbox o
         JOIN notifications n ON n.id = o.notification_id
         JOIN users u ON u.id = n.user_id
         WHERE NOT o.failed AND o.next_attempt_at <= now()
         ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// When the next delivery is due, if one waits.
pub async fn next_due(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT min(next_attempt_at) FROM notification_outbox WHERE NOT failed")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The delivery was accepted.
pub async fn delivered(conn: &mut PgConnection, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM notification_outbox WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The delivery failed: retry after `delay`, or give up (`failed`).
pub async fn postpone(
    conn: &mut PgConnection,
    id: i64,
    error: &str,
    delay: std::time::Duration,
    failed: bool,
) -> Result<()> {
    sqlx::query(
        "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $2, failed = $4,
         next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(delay.as_secs_f64())
    .bind(failed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deliveries waiting and given up, for `status`.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed) FROM notification_outbox",
    )
    .fetch_one(&mut *conn)
    .await?)
}
