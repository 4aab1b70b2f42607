//! `booking_jobs`: the processes of a `gpures run` job, by booking.

use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// A job: its booking, owner and processes (pid, start ticks).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub booking_id: Uuid,
    pub user_id: i64,
    pub pids: Vec<i32>,
    pub starts: Vec<i64>,
}

/// Ties `booking_id` to processes on `host` (replacing earlier ones).
pub async fn upsert(
    conn: &mut PgConnection,
    booking_id: Uuid,
    host: &str,
    user_id: i64,
    pids: &[i32],
    starts: &[i64],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO booking_jobs (booking_id, host, user_id, pids, starts)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (booking_id) DO UPDATE SET pids = $4, starts = $5, host = $2",
    )
    .bind(booking_id)
    .bind(host)
    .bind(user_id)
    .bind(pids)
    .bind(starts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The jobs on `host` whose booking still runs; the others are deleted.
pub async fn running_on(conn: &mut PgConnection, host: &str) -> Result<Vec<JobRow>> {
    sqlx::query(
        "DELETE FROM booking_jobs j WHERE j.host = $1 AND NOT EXISTS (
             SELECT 1 FROM reservations r WHERE r.booking_id = j.booking_id
             AND r.status = 'active' AND r.period @> now())",
    )
    .bind(host)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as::<_, JobRow>(
        "SELECT booking_id, user_id, pids, starts FROM booking_jobs WHERE host = $1",
    )
    .bind(host)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn delete(conn: &mut PgConnection, booking_id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM booking_jobs WHERE booking_id = $1")
        .bind(booking_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The job of a booking, if one is tied to it.
pub async fn of_booking(conn: &mut PgConnection, booking_id: Uuid) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(
        "SELECT booking_id, user_id, pids, starts FROM booking_jobs WHERE booking_id = $1",
    )
    .bind(booking_id)
    .fetch_optional(&mut *conn)
    .await?)
}
