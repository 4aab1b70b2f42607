//! `calendar_outbox`: one row per change still to be mirrored into Google
//! Calendar, written in the same transaction as the change ([`enqueue`]).
//! A row names a reservation or a block ([`Subject`]). The calendar worker
//! claims one subject's due rows inside its own transaction ([`claim`]),
//! writes Google, and records the outcome ([`finish`]) before committing.

use chrono::{DateTime, Utc};
use gpures_proto::CalendarStatus;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// `calendar_outbox.operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Operation {
    Upsert,
    Delete,
}

/// How a claimed delivery ended.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Google holds the latest state: the rows go.
    Done,
    /// Try again after the delay; the reason is kept.
    Retry(String, std::time::Duration),
    /// Google refused for good; the rows stay, marked failed with the reason.
    Failed(String),
}

/// What an event mirrors: each has one event, its id derived from this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Reservation(Uuid),
    /// A maintenance window: every resource blocked together.
    Block(Uuid),
}

impl Subject {
    /// The id the event id is derived from (reservation and block ids are
    /// random UUIDs, so the two never meet).
    pub fn id(self) -> Uuid {
        match self {
            Subject::Reservation(id) | Subject::Block(id) => id,
        }
    }
}

/// One subject's due rows, locked by the claiming transaction.
#[derive(Debug)]
pub struct Claimed {
    pub subject: Subject,
    pub rows: Vec<i64>,
    /// The most attempts any of the rows had (for the backoff).
    pub attempts: i32,
}

/// Queues a reservation's latest state for the calendar worker.
pub async fn enqueue(conn: &mut PgConnection, reservation_id: Uuid, op: Operation) -> Result<()> {
    sqlx::query("INSERT INTO calendar_outbox (reservation_id, operation) VALUES ($1, $2)")
        .bind(reservation_id)
        .bind(op)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Queues a block's latest state (its event, or none once lifted).
pub async fn enqueue_block(conn: &mut PgConnection, block_id: Uuid, op: Operation) -> Result<()> {
    sqlx::query("INSERT INTO calendar_outbox (block_id, operation) VALUES ($1, $2)")
        .bind(block_id)
        .bind(op)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Queues the latest state of `subject`.
pub async fn enqueue_subject(
    conn: &mut PgConnection,
    subject: Subject,
    op: Operation,
) -> Result<()> {
    match subject {
        Subject::Reservation(id) => enqueue(conn, id, op).await,
        Subject::Block(id) => enqueue_block(conn, id, op).await,
    }
}

/// Subjects with rows due for delivery, oldest change first.
pub async fn due(conn: &mut PgConnection, limit: i64) -> Result<Vec<Subject>> {
    let rows: Vec<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "SELECT reservation_id, block_id FROM calendar_outbox
         WHERE NOT failed AND next_attempt_at <= now()
         GROUP BY reservation_id, block_id ORDER BY min(id) LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| match row {
            (Some(r), _) => Some(Subject::Reservation(r)),
            (None, Some(b)) => Some(Subject::Block(b)),
            // The table's CHECK forbids it.
            (None, None) => None,
        })
        .collect())
}

/// When the next row is due, if any is waiting.
pub async fn next_due(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT min(next_attempt_at) FROM calendar_outbox WHERE NOT failed")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Locks the due rows of one subject in the caller's transaction, unless
/// another daemon is delivering it (advisory lock) or holds the rows.
pub async fn claim(conn: &mut PgConnection, subject: Subject) -> Result<Option<Claimed>> {
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1::text, 7261))")
            .bind(subject.id())
            .fetch_one(&mut *conn)
            .await?;
    if !locked {
        return Ok(None);
    }
    let sql = match subject {
        Subject::Reservation(_) => {
            "SELECT id, attempts FROM calendar_outbox
             WHERE reservation_id = $1 AND NOT failed AND next_attempt_at <= now()
             ORDER BY id FOR UPDATE SKIP LOCKED"
        }
        Subject::Block(_) => {
            "SELECT id, attempts FROM calendar_outbox
             WHERE block_id = $1 AND NOT failed AND next_attempt_at <= now()
             ORDER BY id FOR UPDATE SKIP LOCKED"
        }
    };
    let rows: Vec<(i64, i32)> = sqlx::query_as(sql)
        .bind(subject.id())
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(Claimed {
        subject,
        attempts: rows.iter().map(|(_, a)| *a).max().unwrap_or(0),
        rows: rows.into_iter().map(|(id, _)| id).collect(),
    }))
}

/// Records the outcome of a claimed delivery. A success wrote the
/// subject's current state, so it also clears the subject's earlier
/// failures (the sync state is the latest delivery's), and it pulls forward
/// the rows waiting out a backoff: Google answers again, so the backlog goes
/// now rather than at the end of each row's delay.
pub async fn finish(conn: &mut PgConnection, claimed: &Claimed, delivery: &Delivery) -> Result<()> {
    match delivery {
        Delivery::Done => {
            sqlx::query(
                "DELETE FROM calendar_outbox
                 WHERE id = ANY($1)
                    OR ((reservation_id = $2 OR block_id = $2) AND failed
                        AND id < (SELECT max(x) FROM unnest($1::bigint[]) x))",
            )
            .bind(&claimed.rows)
            .bind(claimed.subject.id())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE calendar_outbox SET next_attempt_at = now()
                 WHERE NOT failed AND attempts > 0 AND next_attempt_at > now()",
            )
            .execute(&mut *conn)
            .await?;
        }
        Delivery::Retry(reason, after) => {
            sqlx::query(
                "UPDATE calendar_outbox SET attempts = attempts + 1, last_error = $2,
                     next_attempt_at = now() + make_interval(secs => $3)
                 WHERE id = ANY($1)",
            )
            .bind(&claimed.rows)
            .bind(reason)
            .bind(after.as_secs_f64())
            .execute(&mut *conn)
            .await?;
        }
        Delivery::Failed(reason) => {
            sqlx::query(
                "UPDATE calendar_outbox SET attempts = attempts + 1, last_error = $2, failed = true WHERE id = ANY($1)",
            )
            .bind(&claimed.rows)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Whether the event of `reservation_id` is known to exist.
pub async fn event_known(conn: &mut PgConnection, reservation_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM calendar_events WHERE reservation_id = $1)",
    )
    .bind(reservation_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Records that the event of `reservation_id` exists (`true`) or is gone.
pub async fn set_event_known(
    conn: &mut PgConnection,
    reservation_id: Uuid,
    exists: bool,
) -> Result<()> {
    let sql = if exists {
        "INSERT INTO calendar_events (reservation_id) VALUES ($1)
         ON CONFLICT (reservation_id) DO UPDATE SET written_at = now()"
    } else {
        "DELETE FROM calendar_events WHERE reservation_id = $1"
    };
    sqlx::query(sql)
        .bind(reservation_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives every failed row another chance (after a configuration change,
/// or `calendar resync`).
pub async fn retry_failed(conn: &mut PgConnection) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE calendar_outbox SET failed = false, attempts = 0, next_attempt_at = now() WHERE failed",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// The outbox as admins see it.
pub async fn status(conn: &mut PgConnection, enabled: bool) -> Result<CalendarStatus> {
    let (queued, failed, oldest, last_error): (i64, i64, Option<DateTime<Utc>>, Option<String>) =
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed),
                    min(created_at) FILTER (WHERE NOT failed),
                    (SELECT last_error FROM calendar_outbox WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
             FROM calendar_outbox",
        )
        .fetch_one(&mut *conn)
        .await?;
    Ok(CalendarStatus {
        enabled,
        queued,
        failed,
        oldest_pending_secs: oldest.map(|t| (Utc::now() - t).num_seconds().max(0)),
        last_error,
    })
}
