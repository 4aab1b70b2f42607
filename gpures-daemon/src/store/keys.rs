//! `signing_keys`: the token keys every daemon on this database shares. The
//! newest key not retired signs; retired keys verify until their tokens
//! have expired, then [`prune`] deletes them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Result;

/// A `signing_keys` row. The secret never leaves the daemon.
#[derive(Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: i32,
    pub secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Every key, newest first.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<KeyRow>> {
    Ok(
        sqlx::query_as::<_, KeyRow>("SELECT * FROM signing_keys ORDER BY id DESC")
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// The id of the key that signs now (the newest not retired), if any.
pub async fn current_id(conn: &mut PgConnection) -> Result<Option<i32>> {
    Ok(
        sqlx::query_scalar("SELECT max(id) FROM signing_keys WHERE retired_at IS NULL")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Takes the lock that makes two daemons starting at once create one key.
pub async fn lock(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(4712)")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Adds a key; it signs from now on.
pub async fn insert(conn: &mut PgConnection, secret: &[u8]) -> Result<KeyRow> {
    Ok(
        sqlx::query_as::<_, KeyRow>("INSERT INTO signing_keys (secret) VALUES ($1) RETURNING *")
            .bind(secret)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Retires every key but `keep`.
pub async fn retire_others(conn: &mut PgConnection, keep: i32) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE signing_keys SET retired_at = now() WHERE id <> $1 AND retired_at IS NULL",
    )
    .bind(keep)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Deletes keys retired before `before` (no token they signed is still valid).
pub async fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM signing_keys WHERE retired_at < $1")
            .bind(before)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
    )
}
