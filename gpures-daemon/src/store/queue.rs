//! `queue_requests`: members waiting for N GPUs. [`lock_waiting`] takes a
//! request for granting (a row lock, and only while it still waits), so
//! that of several daemons exactly one grants it.

use chrono::{DateTime, Utc};
use gpures_proto::{QueueEntry, QueueState, UserRef};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// `queue_requests.state`; an unknown word in the column is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DbQueueState {
    Waiting,
    Granted,
    Cancelled,
    Expired,
}

impl From<DbQueueState> for QueueState {
    fn from(s: DbQueueState) -> QueueState {
        match s {
            DbQueueState::Waiting => QueueState::Waiting,
            DbQueueState::Granted => QueueState::Granted,
            DbQueueState::Cancelled => QueueState::Cancelled,
            DbQueueState::Expired => QueueState::Expired,
        }
    }
}

/// A request with its owner's name.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct QueueRow {
    pub id: Uuid,
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    pub gpus: i32,
    pub length_minutes: i32,
    pub host: Option<String>,
    pub until: Option<DateTime<Utc>>,
    pub note: String,
    pub state: DbQueueState,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub booking_id: Option<Uuid>,
}

impl QueueRow {
    /// As members see it; `position` and `estimated_start` are the service's.
    pub fn entry(
        &self,
        position: Option<u32>,
        estimated_start: Option<DateTime<Utc>>,
    ) -> QueueEntry {
        QueueEntry {
            id: self.id,
            user: UserRef {
                id: self.user_id,
                email: self.email.clone(),
                display_name: self.display_name.clone(),
            },
            gpus: u32::try_from(self.gpus).unwrap_or(0),
            length_minutes: u32::try_from(self.length_minutes).unwrap_or(0),
            host: self.host.clone(),
            until: self.until,
            note: self.note.clone(),
            created_at: self.created_at,
            state: self.state.into(),
            position,
            estimated_start,
            ended_at: self.ended_at,
            booking_id: self.booking_id,
        }
    }
}

/// The request columns with the owner's names; a macro so that queries
/// built on it stay `&'static str`.
macro_rules! queue_select {
    () => {
        "SELECT q.id, q.user_id, u.email, u.display_name, q.gpus, q.length_minutes,
        q.host, q.until, q.note, q.state, q.created_at, q.ended_at, q.booking_id
        FROM queue_requests q JOIN users u ON u.id = q.user_id "
    };
}

/// What a new request asks for.
#[derive(Clone, Debug)]
pub struct NewRequest<'a> {
    pub id: Uuid,
    pub user_id: i64,
    pub gpus: i32,
    pub length_minutes: i32,
    pub host: Option<&'a str>,
    pub until: Option<DateTime<Utc>>,
    pub note: &'a str,
}

/// Adds a request; a retry with the same id (of the same user) changes
/// nothing. Returns whether it was new.
pub async fn insert(conn: &mut PgConnection, r: &NewRequest<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO queue_requests (id, user_id, gpus, length_minutes, host, until, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(r.id)
    .bind(r.user_id)
    .bind(r.gpus)
    .bind(r.length_minutes)
    .bind(r.host)
    .bind(r.until)
    .bind(r.note)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<QueueRow> {
    Ok(
        sqlx::query_as::<_, QueueRow>(concat!(queue_select!(), "WHERE q.id = $1"))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The waiting requests in queue order (first come first served), at most
/// `limit`.
pub async fn waiting(conn: &mut PgConnection, limit: i64) -> Result<Vec<QueueRow>> {
    Ok(sqlx::query_as::<_, QueueRow>(concat!(
        queue_select!(),
        "WHERE q.state = 'waiting' ORDER BY q.created_at, q.id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// `user_id`'s requests that left the queue since `since`, newest first.
pub async fn ended_of(
    conn: &mut PgConnection,
    user_id: i64,
    since: DateTime<Utc>,
) -> Result<Vec<QueueRow>> {
    Ok(sqlx::query_as::<_, QueueRow>(concat!(
        queue_select!(),
        "WHERE q.user_id = $1 AND q.state <> 'waiting' AND q.ended_at >= $2
         ORDER BY q.ended_at DESC LIMIT 50"
    ))
    .bind(user_id)
    .bind(since)
    .fetch_all(&mut *conn)
    .await?)
}

/// Locks request `id` if it still waits (`None` once another daemon granted
/// it, or it was cancelled).
pub async fn lock_waiting(conn: &mut PgConnection, id: Uuid) -> Result<Option<QueueRow>> {
    Ok(sqlx::query_as::<_, QueueRow>(concat!(
        queue_select!(),
        "WHERE q.id = $1 AND q.state = 'waiting' FOR UPDATE OF q"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Ends a request: granted with its booking, cancelled or expired.
pub async fn end(
    conn: &mut PgConnection,
    id: Uuid,
    state: DbQueueState,
    booking_id: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "UPDATE queue_requests SET state = $2, booking_id = $3, ended_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(booking_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Expires the waiting requests whose deadline passed; returns their ids.
pub async fn expire(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "UPDATE queue_requests SET state = 'expired', ended_at = now()
         WHERE state = 'waiting' AND until < $1 RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// Takes the lock that lets one daemon grant at a time (until the end of the
/// transaction).
pub async fn lock_all(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(4714)")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
