//! `users`: accounts. [`UserRow`] carries the password hash and never leaves
//! the daemon; clients see [`UserInfo`].

use chrono::{DateTime, Utc};
use gpures_proto::{Role, UserInfo};
use sqlx::PgConnection;

use super::Result;

/// `users.role`; an unknown word in the column is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DbRole {
    Member,
    Admin,
}

impl From<DbRole> for Role {
    fn from(r: DbRole) -> Role {
        match r {
            DbRole::Member => Role::Member,
            DbRole::Admin => Role::Admin,
        }
    }
}

impl From<Role> for DbRole {
    fn from(r: Role) -> DbRole {
        match r {
            Role::Member => DbRole::Member,
            Role::Admin => DbRole::Admin,
        }
    }
}

/// A `users` row, password hash included: never leaves the daemon.
#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: DbRole,
    pub unix_user: String,
    pub token_version: i32,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// The argon2id hash of a one-time reset code made by the host admin.
    pub reset_code_hash: Option<String>,
    pub reset_code_expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("unix_user", &self.unix_user)
            .finish_non_exhaustive()
    }
}

impl UserRow {
    /// Whether the account has a password (peer-only accounts have none).
    pub fn has_password(&self) -> bool {
        !self.password_hash.is_empty()
    }

    pub fn info(&self) -> UserInfo {
        UserInfo {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role.into(),
            unix_user: self.unix_user.clone(),
            disabled: self.disabled,
            created_at: self.created_at,
            has_password: self.has_password(),
        }
    }
}

/// One of the fixed account changes [`change`] makes.
#[derive(Clone, Debug)]
pub enum UserChange {
    Role(Role),
    /// Disables the account and revokes its tokens; `Some(reason)` also
    /// cancels its reservations to come and ends its running ones (the
    /// service does that part).
    Disable(Option<String>),
    Enable,
    Bind(String),
    RevokeTokens,
}

pub async fn insert(
    conn: &mut PgConnection,
    email: &str,
    display_name: &str,
    password_hash: &str,
    unix_user: &str,
) -> Result<UserRow> {
    Ok(sqlx::query_as::<_, UserRow>(
        "INSERT INTO users (email, display_name, password_hash, unix_user)
         VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(email)
    .bind(display_name)
    .bind(password_hash)
    .bind(unix_user)
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn by_email(conn: &mut PgConnection, email: &str) -> Result<UserRow> {
    Ok(
        sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE lower(email) = lower($1)")
            .bind(email)
            .fetch_one(&mut *conn)
            .await?,
    )
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<UserRow> {
    Ok(
        sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Up to `limit` accounts with an id above `after`, by id.
pub async fn page(conn: &mut PgConnection, after: Option<i64>, limit: i64) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT * FROM users WHERE id > coalesce($1, 0) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// The accounts bound to `unix_user` (disabled ones included), taken under a
/// transaction-scoped lock on that Unix user so two registrations of it
/// queue instead of both passing the count.
pub async fn bound_to(conn: &mut PgConnection, unix_user: &str) -> Result<Vec<UserRow>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 4711))")
        .bind(unix_user)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE unix_user = $1 ORDER BY id")
            .bind(unix_user)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// The accounts bound to `unix_user`, without a lock (peer sign-in).
pub async fn of_unix_user(conn: &mut PgConnection, unix_user: &str) -> Result<Vec<UserRow>> {
    Ok(
        sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE unix_user = $1 ORDER BY id")
            .bind(unix_user)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Sets the password hash (empty: none) and forgets any reset code.
pub async fn set_password(conn: &mut PgConnection, id: i64, hash: &str) -> Result<UserRow> {
    Ok(sqlx::query_as::<_, UserRow>(
        "UPDATE users SET password_hash = $2, reset_code_hash = NULL, reset_code_expires = NULL
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(hash)
    .fetch_one(&mut *conn)
    .await?)
}

/// Stores a one-time reset code's hash, valid until `expires`.
pub async fn set_reset_code(
    conn: &mut PgConnection,
    id: i64,
    hash: &str,
    expires: DateTime<Utc>,
) -> Result<UserRow> {
    Ok(sqlx::query_as::<_, UserRow>(
        "UPDATE users SET reset_code_hash = $2, reset_code_expires = $3 WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(hash)
    .bind(expires)
    .fetch_one(&mut *conn)
    .await?)
}

/// Changes the display name and the email (each `None`: kept).
pub async fn set_profile(
    conn: &mut PgConnection,
    id: i64,
    display_name: Option<&str>,
    email: Option<&str>,
) -> Result<UserRow> {
    Ok(sqlx::query_as::<_, UserRow>(
        "UPDATE users SET display_name = coalesce($2, display_name), email = coalesce($3, email)
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(display_name)
    .bind(email)
    .fetch_one(&mut *conn)
    .await?)
}

/// The Unix user each of `ids` is bound to (for the status flags), without
/// reading password hashes.
pub async fn unix_users(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT id, unix_user FROM users WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Every account's id and Unix user.
pub async fn all_unix_users(conn: &mut PgConnection) -> Result<Vec<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT id, unix_user FROM users ORDER BY id")
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// The active admins' ids (to tell them what waits for an admin).
pub async fn admin_ids(conn: &mut PgConnection) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar(
            "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await?,
    )
}

/// Changes one account field by email. `change` is one of the fixed
/// statements of [`UserChange`], never text from a caller.
pub async fn change(conn: &mut PgConnection, email: &str, change: &UserChange) -> Result<UserRow> {
    let query = match change {
        UserChange::Role(role) => sqlx::query_as::<_, UserRow>(
            "UPDATE users SET role = $2 WHERE lower(email) = lower($1) RETURNING *",
        )
        .bind(email)
        .bind(DbRole::from(*role)),
        UserChange::Disable(_) => sqlx::query_as::<_, UserRow>(
            "UPDATE users SET disabled = true, token_version = token_version + 1
             WHERE lower(email) = lower($1) RETURNING *",
        )
        .bind(email),
        UserChange::Enable => sqlx::query_as::<_, UserRow>(
            "UPDATE users SET disabled = false WHERE lower(email) = lower($1) RETURNING *",
        )
        .bind(email),
        UserChange::Bind(unix_user) => sqlx::query_as::<_, UserRow>(
            "UPDATE users SET unix_user = $2, token_version = token_version + 1
             WHERE lower(email) = lower($1) RETURNING *",
        )
        .bind(email)
        .bind(unix_user),
        UserChange::RevokeTokens => sqlx::query_as::<_, UserRow>(
            "UPDATE users SET token_version = token_version + 1
             WHERE lower(email) = lower($1) RETURNING *",
        )
        .bind(email),
    };
    Ok(query.fetch_one(&mut *conn).await?)
}
