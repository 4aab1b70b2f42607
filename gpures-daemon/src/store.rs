//! SQL and nothing else: [`Store`] wraps the pool, and the free functions
//! taking a `&mut PgConnection` run inside the service layer's transactions.
//!
//! `sqlx::Error` is classified once, in [`StoreError::from`]: `23P01` (the
//! exclusion constraint) is [`StoreError::Overlap`], `40P01`/`40001` are
//! [`StoreError::Retry`], lost connections are [`StoreError::Unavailable`].

use chrono::{DateTime, Utc};
use gpures_proto::{CalendarStatus, SyncState};
use gpures_proto::{
    Holder, NewResource, Period, Reservation, ReservationFilter, ReservationStatus, Resource,
    ResourceKind, ResourceUpdate, Role, UserInfo, UserRef,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use thiserror::Error;
use uuid::Uuid;

/// The reservation columns with resource and owner names; a macro so that
/// queries built on it stay `&'static str` (no SQL is built at run time).
macro_rules! reservation_select {
    () => {
        "SELECT r.id, r.booking_id, r.resource_id, res.name AS resource_name,
        r.user_id, u.email, u.display_name, lower(r.period) AS start_at, upper(r.period) AS end_at,
        r.note, r.status, r.created_at, r.updated_at,
        CASE WHEN coalesce(current_setting('gpures.calendar', true), 'off') <> 'on' THEN 'off'
             WHEN EXISTS (SELECT 1 FROM calendar_outbox o WHERE o.reservation_id = r.id AND o.failed) THEN 'failed'
             WHEN EXISTS (SELECT 1 FROM calendar_outbox o WHERE o.reservation_id = r.id) THEN 'pending'
             ELSE 'synced' END AS sync_state,
        (SELECT o.last_error FROM calendar_outbox o WHERE o.reservation_id = r.id AND o.failed
          ORDER BY o.id DESC LIMIT 1) AS sync_error
    FROM reservations r
    JOIN resources res ON res.id = r.resource_id
    JOIN users u ON u.id = r.user_id "
    };
}

/// The migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The channel every committed change is announced on (`LISTEN/NOTIFY`).
pub const CHANGES_CHANNEL: &str = "gpures_changes";
/// The channel an account change is announced on, with the user id: every
/// daemon drops that account from its [`UserCache`].
pub const USERS_CHANNEL: &str = "gpures_users";

/// Accounts recently read to verify a token, so that a call does not cost a
/// database round trip. Entries are dropped when any daemon changes the
/// account (`NOTIFY gpures_users`), all of them when the listener's connection
/// was lost (notifications may have been missed), and after [`Self::TTL`] in
/// any case. While the listener is down nothing is cached.
#[derive(Debug, Default)]
pub struct UserCache {
    entries: std::sync::Mutex<std::collections::HashMap<i64, (UserRow, std::time::Instant)>>,
    listening: std::sync::atomic::AtomicBool,
    /// Bumped by every invalidation: a row read before one is not cached
    /// after it (it may predate the change that caused it).
    generation: std::sync::atomic::AtomicU64,
}

impl UserCache {
    /// How long an entry may be used at most.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(30);

    pub fn get(&self, id: i64) -> Option<UserRow> {
        if !self.listening.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(&id)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(row, _)| row.clone())
    }

    /// The generation to pass to [`Self::put`], read before the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Caches `row` unless an invalidation happened since `generation`.
    pub fn put(&self, row: UserRow, generation: u64) {
        if !self.listening.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if self.generation() != generation {
                return;
            }
            if entries.len() > 10_000 {
                entries.clear();
            }
            entries.insert(row.id, (row, std::time::Instant::now()));
        }
    }

    pub fn forget(&self, id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            entries.remove(&id);
        }
    }

    /// Called by the listener: `true` once it listens, `false` when its
    /// connection is gone. Either way the cache starts empty.
    pub fn set_listening(&self, on: bool) {
        self.listening
            .store(on, std::sync::atomic::Ordering::Release);
        if let Ok(mut entries) = self.entries.lock() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            entries.clear();
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("row not found")]
    NotFound,
    /// The exclusion constraint refused an overlapping reservation.
    #[error("overlapping reservation")]
    Overlap,
    /// A unique constraint refused a duplicate; the constraint's name.
    #[error("duplicate value ({0})")]
    Duplicate(String),
    /// A deadlock or serialization failure: the transaction may simply be retried.
    #[error("transaction must be retried")]
    Retry,
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database holds a migration this binary does not know.
    #[error(
        "the database was migrated by a newer gpures-daemon (schema version {0} is unknown to this one): \
         upgrade this daemon; it will not touch a newer schema"
    )]
    Newer(i64),
    #[error(transparent)]
    Other(sqlx::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("23P01") => StoreError::Overlap,
                Some("23505") => {
                    StoreError::Duplicate(db.constraint().unwrap_or("unique").to_owned())
                }
                Some("40P01" | "40001") => StoreError::Retry,
                // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
                Some("57P01" | "57P02" | "57P03" | "53300") => {
                    StoreError::Unavailable(db.message().to_owned())
                }
                _ => StoreError::Other(e),
            },
            _ => StoreError::Other(e),
        }
    }
}

/// The connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Opens a pool. Connections are made lazily, so a database that is down at
    /// start is reported by the first query, and one that goes away later is
    /// reconnected without a restart.
    pub fn connect_lazy(options: PgConnectOptions, size: u32) -> Store {
        Store::connect_lazy_with_calendar(options, size, false)
    }

    /// Like [`Store::connect_lazy`]; `calendar` says whether calendar sync is
    /// on, which reservations' sync state reports (`gpures.calendar` is set on
    /// every connection).
    pub fn connect_lazy_with_calendar(
        options: PgConnectOptions,
        size: u32,
        calendar: bool,
    ) -> Store {
        let options = options.options([("gpures.calendar", if calendar { "on" } else { "off" })]);
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_lazy_with(options);
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. sqlx holds a PostgreSQL advisory lock while
    /// it migrates, so daemons starting together take turns; a database with
    /// migrations this binary does not know is refused.
    ///
    /// # Errors
    /// The database is unreachable, a migration failed, or the database is newer.
    pub async fn migrate(&self) -> Result<()> {
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(sqlx::migrate::MigrateError::VersionMissing(v)) => Err(StoreError::Newer(v)),
            Err(sqlx::migrate::MigrateError::Execute(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users ----

    pub async fn insert_user(
        &self,
        email: &str,
        display_name: &str,
        password_hash: &str,
        unix_user: &str,
    ) -> Result<UserRow> {
        let mut tx = self.begin().await?;
        let row = sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (email, display_name, password_hash, unix_user)
             VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(email)
        .bind(display_name)
        .bind(password_hash)
        .bind(unix_user)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            Some(row.id),
            unix_user,
            "user.register",
            None,
            None,
            Some(row.id),
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<UserRow> {
        Ok(
            sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn user_by_id(&self, id: i64) -> Result<UserRow> {
        Ok(
            sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        Ok(
            sqlx::query_as::<_, UserRow>("SELECT * FROM users ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Changes one account field by email and audits it. `change` is one of the
    /// fixed statements of [`UserChange`], never text from a caller.
    pub async fn change_user(
        &self,
        email: &str,
        change: UserChange<'_>,
        actor_id: Option<i64>,
        actor_unix_user: &str,
    ) -> Result<UserRow> {
        let mut tx = self.begin().await?;
        let query = match change {
            UserChange::Role(role) => sqlx::query_as::<_, UserRow>(
                "UPDATE users SET role = $2 WHERE lower(email) = lower($1) RETURNING *",
            )
            .bind(email)
            .bind(role.as_str()),
            UserChange::Disable => sqlx::query_as::<_, UserRow>(
                "UPDATE users SET disabled = true, token_version = token_version + 1
                 WHERE lower(email) = lower($1) RETURNING *",
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
        let row = query.fetch_one(&mut *tx).await?;
        audit(
            &mut tx,
            actor_id,
            actor_unix_user,
            change.action(),
            None,
            None,
            Some(row.id),
        )
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(USERS_CHANNEL)
            .bind(row.id.to_string())
            .execute(&mut *tx)
            .await?;
        notify_change(&mut tx).await?;
        tx.commit().await?;
        Ok(row)
    }

    // ---- resources ----

    pub async fn list_resources(&self, include_inactive: bool) -> Result<Vec<Resource>> {
        let rows = sqlx::query_as::<_, ResourceRow>(
            "SELECT * FROM resources WHERE active OR $1 ORDER BY host, gpu_index NULLS LAST, name",
        )
        .bind(include_inactive)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Resource::from).collect())
    }

    pub async fn resource_by_name(&self, name: &str) -> Result<Resource> {
        Ok(
            sqlx::query_as::<_, ResourceRow>("SELECT * FROM resources WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?
                .into(),
        )
    }

    pub async fn insert_resource(
        &self,
        r: &NewResource,
        actor_id: Option<i64>,
        actor_unix_user: &str,
    ) -> Result<Resource> {
        let mut tx = self.begin().await?;
        let row = sqlx::query_as::<_, ResourceRow>(
            "INSERT INTO resources (name, host, kind, gpu_index, gpu_uuid, description)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(&r.name)
        .bind(&r.host)
        .bind(r.kind.as_str())
        .bind(r.gpu_index)
        .bind(&r.gpu_uuid)
        .bind(&r.description)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor_id,
            actor_unix_user,
            "resource.create",
            None,
            Some(row.id),
            None,
        )
        .await?;
        notify_change(&mut tx).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    pub async fn update_resource(
        &self,
        id: i64,
        u: &ResourceUpdate,
        actor_id: Option<i64>,
        actor_unix_user: &str,
    ) -> Result<Resource> {
        let mut tx = self.begin().await?;
        let row = sqlx::query_as::<_, ResourceRow>(
            "UPDATE resources SET
                name = COALESCE($2, name),
                host = COALESCE($3, host),
                gpu_index = CASE WHEN $4 THEN $5 ELSE gpu_index END,
                gpu_uuid = CASE WHEN $6 THEN $7 ELSE gpu_uuid END,
                description = COALESCE($8, description),
                active = COALESCE($9, active)
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(&u.name)
        .bind(&u.host)
        .bind(u.gpu_index.is_some())
        .bind(u.gpu_index.flatten())
        .bind(u.gpu_uuid.is_some())
        .bind(u.gpu_uuid.clone().flatten())
        .bind(&u.description)
        .bind(u.active)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor_id,
            actor_unix_user,
            "resource.update",
            None,
            Some(id),
            None,
        )
        .await?;
        notify_change(&mut tx).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    // ---- reservations (outside transactions) ----

    pub async fn reservation(&self, id: Uuid) -> Result<Reservation> {
        let mut conn = self.pool.acquire().await?;
        reservation(&mut conn, id).await
    }

    /// Reservations matching `filter`, ordered by start then resource.
    pub async fn list_reservations(&self, filter: &ReservationFilter) -> Result<Vec<Reservation>> {
        let (start, end) = match filter.window {
            Some(w) => (Some(w.start), Some(w.end)),
            None => (None, None),
        };
        let rows = sqlx::query_as::<_, ReservationRow>(concat!(
            reservation_select!(),
            "
             WHERE (cardinality($1::bigint[]) = 0 OR r.resource_id = ANY($1))
               AND ($2::text IS NULL OR lower(u.email) = lower($2))
               AND ($3::timestamptz IS NULL OR r.period && tstzrange($3, $4, '[)'))
               AND ($5 OR r.status = 'active')
             ORDER BY lower(r.period), res.name
             LIMIT 10000"
        ))
        .bind(&filter.resources)
        .bind(&filter.user_email)
        .bind(start)
        .bind(end)
        .bind(filter.include_cancelled)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Reservation::from).collect())
    }

    /// Active reservations overlapping `window`, ordered by resource and start.
    pub async fn active_in_window(&self, window: Period) -> Result<Vec<Reservation>> {
        let rows = sqlx::query_as::<_, ReservationRow>(concat!(
            reservation_select!(),
            "
             WHERE r.status = 'active' AND r.period && tstzrange($1, $2, '[)')
             ORDER BY r.resource_id, lower(r.period)"
        ))
        .bind(window.start)
        .bind(window.end)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Reservation::from).collect())
    }

    /// Per resource, the active reservation holding it at `at` and the next one
    /// to start after `at`.
    pub async fn current_and_next(
        &self,
        at: DateTime<Utc>,
    ) -> Result<(Vec<Reservation>, Vec<Reservation>)> {
        let current = sqlx::query_as::<_, ReservationRow>(concat!(
            reservation_select!(),
            " WHERE r.status = 'active' AND r.period @> $1::timestamptz"
        ))
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        let next = sqlx::query_as::<_, ReservationRow>(concat!(
            "SELECT DISTINCT ON (r.resource_id) * FROM (",
            reservation_select!(),
            "
               WHERE r.status = 'active' AND lower(r.period) > $1) r
             ORDER BY r.resource_id, r.start_at"
        ))
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            current.into_iter().map(Reservation::from).collect(),
            next.into_iter().map(Reservation::from).collect(),
        ))
    }

    /// Every pair of overlapping active reservations of one resource. Always
    /// empty while the exclusion constraint exists; tests and `check` use it.
    pub async fn overlapping_pairs(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT count(*) FROM reservations a JOIN reservations b
               ON a.resource_id = b.resource_id AND a.id < b.id AND a.period && b.period
             WHERE a.status = 'active' AND b.status = 'active'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }
}

impl Store {
    // ---- GPU telemetry ----

    /// Replaces this host's latest GPU record.
    pub async fn put_host_record(&self, record: &crate::gpu::HostRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO host_telemetry (host, updated_at, record) VALUES ($1, now(), $2)
             ON CONFLICT (host) DO UPDATE SET updated_at = now(), record = EXCLUDED.record",
        )
        .bind(&record.host)
        .bind(sqlx::types::Json(record))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every host's latest GPU record.
    pub async fn host_records(&self) -> Result<Vec<crate::gpu::HostRecord>> {
        let rows: Vec<(sqlx::types::Json<crate::gpu::HostRecord>,)> =
            sqlx::query_as("SELECT record FROM host_telemetry ORDER BY host")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(r,)| r.0).collect())
    }

    /// Active reservations that ended within `since` before `at` (for
    /// `overrun`: whose job may still be running).
    pub async fn recently_ended(
        &self,
        at: DateTime<Utc>,
        since: chrono::TimeDelta,
    ) -> Result<Vec<Reservation>> {
        let rows = sqlx::query_as::<_, ReservationRow>(concat!(
            reservation_select!(),
            " WHERE r.status = 'active' AND upper(r.period) <= $1 AND upper(r.period) > $2"
        ))
        .bind(at)
        .bind(at - since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Reservation::from).collect())
    }
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

/// One reservation's outbox rows, locked for delivery by this daemon.
pub struct CalendarClaim {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rows: Vec<i64>,
    /// The most attempts any of the rows had (for the backoff).
    pub attempts: i32,
    /// The reservation's current state.
    pub reservation: Option<Reservation>,
}

impl CalendarClaim {
    /// Records the outcome and releases the rows.
    ///
    /// # Errors
    /// Store failures (the rows then stay as they were).
    pub async fn finish(mut self, delivery: Delivery) -> Result<()> {
        match delivery {
            Delivery::Done => {
                sqlx::query("DELETE FROM calendar_outbox WHERE id = ANY($1)")
                    .bind(&self.rows)
                    .execute(&mut *self.tx)
                    .await?;
            }
            Delivery::Retry(reason, after) => {
                sqlx::query(
                    "UPDATE calendar_outbox SET attempts = attempts + 1, last_error = $2,
                         next_attempt_at = now() + make_interval(secs => $3)
                     WHERE id = ANY($1)",
                )
                .bind(&self.rows)
                .bind(reason)
                .bind(after.as_secs_f64())
                .execute(&mut *self.tx)
                .await?;
            }
            Delivery::Failed(reason) => {
                sqlx::query(
                    "UPDATE calendar_outbox SET attempts = attempts + 1, last_error = $2, failed = true WHERE id = ANY($1)",
                )
                .bind(&self.rows)
                .bind(reason)
                .execute(&mut *self.tx)
                .await?;
                notify_change(&mut self.tx).await?;
            }
        }
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    // ---- calendar outbox ----

    /// Reservations with rows due for delivery, oldest change first.
    pub async fn calendar_due(&self, limit: i64) -> Result<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT reservation_id FROM calendar_outbox WHERE NOT failed AND next_attempt_at <= now()
             GROUP BY reservation_id ORDER BY min(id) LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// When the next row is due, if any is waiting.
    pub async fn calendar_next_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(
            sqlx::query_scalar("SELECT min(next_attempt_at) FROM calendar_outbox WHERE NOT failed")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Locks the due rows of one reservation for delivery, unless another
    /// daemon is delivering it (advisory lock) or holds the rows.
    pub async fn calendar_claim(&self, reservation_id: Uuid) -> Result<Option<CalendarClaim>> {
        let mut tx = self.begin().await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1::text, 7261))",
        )
        .bind(reservation_id)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok(None);
        }
        let rows: Vec<(i64, i32)> = sqlx::query_as(
            "SELECT id, attempts FROM calendar_outbox
             WHERE reservation_id = $1 AND NOT failed AND next_attempt_at <= now()
             ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(reservation_id)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let reservation = match reservation(&mut tx, reservation_id).await {
            Ok(r) => Some(r),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        };
        Ok(Some(CalendarClaim {
            attempts: rows.iter().map(|(_, a)| *a).max().unwrap_or(0),
            rows: rows.into_iter().map(|(id, _)| id).collect(),
            tx,
            reservation,
        }))
    }

    /// Gives every failed row another chance (after a configuration change,
    /// or `calendar resync`).
    pub async fn calendar_retry_failed(&self) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE calendar_outbox SET failed = false, attempts = 0, next_attempt_at = now() WHERE failed")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// The outbox as admins see it.
    pub async fn calendar_status(&self, enabled: bool) -> Result<CalendarStatus> {
        let (queued, failed, oldest, last_error): (i64, i64, Option<DateTime<Utc>>, Option<String>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed),
                    min(created_at) FILTER (WHERE NOT failed),
                    (SELECT last_error FROM calendar_outbox WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
             FROM calendar_outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(CalendarStatus {
            enabled,
            queued,
            failed,
            oldest_pending_secs: oldest.map(|t| (Utc::now() - t).num_seconds().max(0)),
            last_error,
        })
    }
}

/// One of the fixed account changes [`Store::change_user`] makes.
#[derive(Clone, Copy, Debug)]
pub enum UserChange<'a> {
    Role(Role),
    Disable,
    Bind(&'a str),
    RevokeTokens,
}

impl UserChange<'_> {
    fn action(&self) -> &'static str {
        match self {
            UserChange::Role(_) => "user.role",
            UserChange::Disable => "user.disable",
            UserChange::Bind(_) => "user.bind",
            UserChange::RevokeTokens => "user.revoke_tokens",
        }
    }
}

// ---- inside a transaction ----

/// Locks the resource rows in id order (a fixed order, so two multi-GPU
/// bookings can never deadlock) and returns them. Every transaction that adds
/// or moves a reservation takes this lock first: racing inserts then queue
/// here instead of deadlocking inside the exclusion constraint's index.
pub async fn lock_resources(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Resource>> {
    let rows = sqlx::query_as::<_, ResourceRow>(
        "SELECT * FROM resources WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Resource::from).collect())
}

/// Reservations a user already made with `request_id` (a retried booking).
pub async fn by_request(
    conn: &mut PgConnection,
    user_id: i64,
    request_id: Uuid,
) -> Result<Vec<Reservation>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        " WHERE r.user_id = $1 AND r.request_id = $2 ORDER BY res.name"
    ))
    .bind(user_id)
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Reservation::from).collect())
}

/// Active reservations of `resources` overlapping `period`, except `ignore`.
pub async fn holders(
    conn: &mut PgConnection,
    resources: &[i64],
    period: Period,
    ignore: Option<Uuid>,
) -> Result<Vec<Holder>> {
    let rows = sqlx::query_as::<_, ReservationRow>(concat!(
        reservation_select!(),
        "
         WHERE r.status = 'active' AND r.resource_id = ANY($1)
           AND r.period && tstzrange($2, $3, '[)')
           AND ($4::uuid IS NULL OR r.id <> $4)
         ORDER BY res.name, lower(r.period)"
    ))
    .bind(resources)
    .bind(period.start)
    .bind(period.end)
    .bind(ignore)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let r = Reservation::from(row);
            Holder {
                reservation_id: r.id,
                resource_id: r.resource_id,
                resource_name: r.resource_name,
                user: r.user,
                period: r.period,
            }
        })
        .collect())
}

/// A new active reservation.
pub struct NewReservation<'a> {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub request_id: Uuid,
    pub user_id: i64,
    pub resource_id: i64,
    pub period: Period,
    pub note: &'a str,
}

pub async fn insert_reservation(conn: &mut PgConnection, r: &NewReservation<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO reservations (id, booking_id, request_id, user_id, resource_id, period, note)
         VALUES ($1, $2, $3, $4, $5, tstzrange($6, $7, '[)'), $8)",
    )
    .bind(r.id)
    .bind(r.booking_id)
    .bind(r.request_id)
    .bind(r.user_id)
    .bind(r.resource_id)
    .bind(r.period.start)
    .bind(r.period.end)
    .bind(r.note)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn reservation(conn: &mut PgConnection, id: Uuid) -> Result<Reservation> {
    let row =
        sqlx::query_as::<_, ReservationRow>(concat!(reservation_select!(), " WHERE r.id = $1"))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(row.into())
}

/// Locks one reservation row for a change.
pub async fn lock_reservation(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("SELECT 1 FROM reservations WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_period_and_note(
    conn: &mut PgConnection,
    id: Uuid,
    period: Period,
    note: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE reservations SET period = tstzrange($2, $3, '[)'), note = $4, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(period.start)
    .bind(period.end)
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_cancelled(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE reservations SET status = 'cancelled', updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Queues a reservation's latest state for the calendar worker.
pub async fn enqueue_calendar(
    conn: &mut PgConnection,
    reservation_id: Uuid,
    delete: bool,
) -> Result<()> {
    sqlx::query("INSERT INTO calendar_outbox (reservation_id, operation) VALUES ($1, $2)")
        .bind(reservation_id)
        .bind(if delete { "delete" } else { "upsert" })
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records who did what. `actor_id` is `None` for the host admin's commands.
pub async fn audit(
    conn: &mut PgConnection,
    actor_id: Option<i64>,
    actor_unix_user: &str,
    action: &str,
    reservation_id: Option<Uuid>,
    resource_id: Option<i64>,
    target_user_id: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_unix_user, action, reservation_id, resource_id, target_user_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor_id)
    .bind(actor_unix_user)
    .bind(action)
    .bind(reservation_id)
    .bind(resource_id)
    .bind(target_user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Announces a change to every daemon on this database when the transaction
/// commits (PostgreSQL delivers NOTIFY only on commit, and folds duplicates).
pub async fn notify_change(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANGES_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// ---- rows ----

/// A `users` row, password hash included: never leaves the daemon.
#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: String,
    pub unix_user: String,
    pub token_version: i32,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
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
    pub fn role(&self) -> Role {
        if self.role == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }

    pub fn info(&self) -> UserInfo {
        UserInfo {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role(),
            unix_user: self.unix_user.clone(),
            disabled: self.disabled,
            created_at: self.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ResourceRow {
    id: i64,
    name: String,
    host: String,
    kind: String,
    gpu_index: Option<i32>,
    gpu_uuid: Option<String>,
    description: String,
    active: bool,
}

impl From<ResourceRow> for Resource {
    fn from(r: ResourceRow) -> Self {
        Resource {
            id: r.id,
            name: r.name,
            host: r.host,
            kind: if r.kind == "gpu" {
                ResourceKind::Gpu
            } else {
                ResourceKind::Server
            },
            gpu_index: r.gpu_index,
            gpu_uuid: r.gpu_uuid,
            description: r.description,
            active: r.active,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: Uuid,
    booking_id: Uuid,
    resource_id: i64,
    resource_name: String,
    user_id: i64,
    email: String,
    display_name: String,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    note: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sync_state: String,
    sync_error: Option<String>,
}

impl From<ReservationRow> for Reservation {
    fn from(r: ReservationRow) -> Self {
        Reservation {
            id: r.id,
            booking_id: r.booking_id,
            resource_id: r.resource_id,
            resource_name: r.resource_name,
            user: UserRef {
                id: r.user_id,
                email: r.email,
                display_name: r.display_name,
            },
            period: Period {
                start: r.start_at,
                end: r.end_at,
            },
            note: r.note,
            status: if r.status == "active" {
                ReservationStatus::Active
            } else {
                ReservationStatus::Cancelled
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            sync: match r.sync_state.as_str() {
                "off" => SyncState::Off,
                "failed" => SyncState::Failed(r.sync_error.unwrap_or_default()),
                "pending" => SyncState::Pending,
                _ => SyncState::Synced,
            },
        }
    }
}
