//! `reclaim_state`: what idle reclaim saw of a running booking.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct State {
    pub booking_id: Uuid,
    pub last_busy_at: Option<DateTime<Utc>>,
    pub idle_since: Option<DateTime<Utc>>,
    pub warned_at: Option<DateTime<Utc>>,
    pub kept_until: Option<DateTime<Utc>>,
}

impl State {
    pub fn new(booking_id: Uuid) -> State {
        State {
            booking_id,
            last_busy_at: None,
            idle_since: None,
            warned_at: None,
            kept_until: None,
        }
    }
}

pub async fn of(conn: &mut PgConnection, bookings: &[Uuid]) -> Result<Vec<State>> {
    Ok(sqlx::query_as(
        "SELECT booking_id, last_busy_at, idle_since, warned_at, kept_until
         FROM reclaim_state WHERE booking_id = ANY($1)",
    )
    .bind(bookings)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn save(conn: &mut PgConnection, s: &State) -> Result<()> {
    sqlx::query(
        "INSERT INTO reclaim_state (booking_id, last_busy_at, idle_since, warned_at, kept_until)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (booking_id) DO UPDATE
         SET last_busy_at = $2, idle_since = $3, warned_at = $4, kept_until = $5",
    )
    .bind(s.booking_id)
    .bind(s.last_busy_at)
    .bind(s.idle_since)
    .bind(s.warned_at)
    .bind(s.kept_until)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets bookings that no longer run (or will not run again).
pub async fn forget_ended(conn: &mut PgConnection) -> Result<()> {
    sqlx::query(
        "DELETE FROM reclaim_state s WHERE NOT EXISTS (
             SELECT 1 FROM reservations r WHERE r.booking_id = s.booking_id
             AND r.status = 'active' AND upper(r.period) > now())",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
