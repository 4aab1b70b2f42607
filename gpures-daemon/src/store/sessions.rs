//! `sessions`: one row per login. A token names its session; the session's
//! expiry slides forward on use ([`touch`]) and revoking it stops every copy
//! of the token.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Result;

/// A `sessions` row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: i64,
    pub unix_user: String,
    pub host: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SessionRow {
    /// Neither revoked nor idle past its expiry at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: i64,
    unix_user: &str,
    host: &str,
    expires_at: DateTime<Utc>,
) -> Result<SessionRow> {
    Ok(sqlx::query_as::<_, SessionRow>(
        "INSERT INTO sessions (id, user_id, unix_user, host, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .bind(id)
    .bind(user_id)
    .bind(unix_user)
    .bind(host)
    .bind(expires_at)
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<SessionRow> {
    Ok(
        sqlx::query_as::<_, SessionRow>("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Marks a live session used now and moves its expiry to `expires_at`.
pub async fn touch(
    conn: &mut PgConnection,
    id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<SessionRow> {
    Ok(sqlx::query_as::<_, SessionRow>(
        "UPDATE sessions SET last_used_at = now(), expires_at = greatest(expires_at, $2)
         WHERE id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING *",
    )
    .bind(id)
    .bind(expires_at)
    .fetch_one(&mut *conn)
    .await?)
}

/// Revokes one session of `user_id`; `NotFound` when it is not theirs or
/// already ended.
pub async fn revoke(conn: &mut PgConnection, user_id: i64, id: Uuid) -> Result<SessionRow> {
    Ok(sqlx::query_as::<_, SessionRow>(
        "UPDATE sessions SET revoked_at = now()
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING *",
    )
    .bind(id)
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Revokes every live session of `user_id` but `keep`; returns how many.
pub async fn revoke_all(conn: &mut PgConnection, user_id: i64, keep: Option<Uuid>) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
    )
    .bind(user_id)
    .bind(keep)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// The live sessions of `user_id`, newest first (at most `limit`).
pub async fn live_of(conn: &mut PgConnection, user_id: i64, limit: i64) -> Result<Vec<SessionRow>> {
    Ok(sqlx::query_as::<_, SessionRow>(
        "SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
         ORDER BY created_at DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Deletes sessions that ended more than `keep_days` ago.
pub async fn prune(conn: &mut PgConnection, keep_days: i32) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM sessions
         WHERE coalesce(revoked_at, expires_at) < now() - make_interval(days => $1)",
    )
    .bind(keep_days)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
