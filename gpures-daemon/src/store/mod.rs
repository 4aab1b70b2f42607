//! SQL and nothing else, one file per table: [`users`], [`resources`],
//! [`reservations`], [`outbox`] (the calendar outbox), [`telemetry`] (GPU
//! records per host) and [`audit`].
//!
//! One transaction style: the service layer owns every transaction. It takes
//! a connection ([`Store::acquire`]) or opens a transaction ([`Store::begin`])
//! and passes `&mut PgConnection` to the functions here; no function in this
//! module commits, audits or notifies on its own.
//!
//! `sqlx::Error` is classified once, in [`StoreError::from`]: `23P01` (the
//! exclusion constraint) is [`StoreError::Overlap`], `23505` is
//! [`StoreError::Duplicate`], `40P01`/`40001` are [`StoreError::Retry`], lost
//! connections are [`StoreError::Unavailable`]. Columns holding a fixed set of
//! words are read as `sqlx::Type` enums, so an unknown value is an error, not
//! a silent default.

/// The reservation columns with resource and owner names; a macro so that
/// queries built on it stay `&'static str` (no SQL is built at run time).
macro_rules! reservation_select {
    () => {
        "SELECT r.id, r.booking_id, r.resource_id, res.name AS resource_name,
        r.user_id, u.email, u.display_name, lower(r.period) AS start_at, upper(r.period) AS end_at,
        r.note, r.status, r.created_at, r.updated_at, r.change_reason, r.series_id,
        r.pending_until, r.pending_reason,
        CASE WHEN coalesce(current_setting('gpures.calendar', true), 'off') <> 'on' THEN 'off'
             WHEN EXISTS (SELECT 1 FROM calendar_outbox o WHERE o.reservation_id = r.id AND o.failed) THEN 'failed'
             WHEN EXISTS (SELECT 1 FROM calendar_outbox o WHERE o.reservation_id = r.id) THEN 'pending'
             ELSE 'synced' END AS sync_state,
        CASE WHEN coalesce(current_setting('gpures.calendar', true), 'off') = 'on' THEN
          (SELECT o.last_error FROM calendar_outbox o WHERE o.reservation_id = r.id AND o.failed
            ORDER BY o.id DESC LIMIT 1) END AS sync_error
    FROM reservations r
    JOIN resources res ON res.id = r.resource_id
    JOIN users u ON u.id = r.user_id "
    };
}

pub mod audit;
pub mod blocks;
pub mod jobs;
pub mod keys;
pub mod notifications;
pub mod outbox;
pub mod policy;
pub mod queue;
pub mod reclaim;
pub mod reservations;
pub mod resources;
pub mod sessions;
pub mod telemetry;
pub mod usage;
pub mod users;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use thiserror::Error;
use uuid::Uuid;

pub use audit::AuditAction;

/// The migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long an unused pooled connection stays open by default.
pub const IDLE_DEFAULT: std::time::Duration = std::time::Duration::from_secs(60);

/// The channel every committed change is announced on (`LISTEN/NOTIFY`).
pub const CHANGES_CHANNEL: &str = "gpures_changes";
/// The channel an account change is announced on, with the user id: every
/// daemon drops that account from its account cache.
pub const USERS_CHANNEL: &str = "gpures_users";

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

/// A pooled connection.
pub type Conn = sqlx::pool::PoolConnection<sqlx::Postgres>;
/// An open transaction; dropped without commit, it rolls back.
pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

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
        Store::connect_lazy_with_calendar(options, size, IDLE_DEFAULT, false)
    }

    /// Like [`Store::connect_lazy`]; a connection unused for `idle` is
    /// closed (the pool grows with the load and shrinks back to none);
    /// `calendar` says whether calendar sync is on, which reservations' sync
    /// state reports (`gpures.calendar` is set on every connection).
    ///
    /// Every session runs without JIT and without parallel workers: the
    /// daemon's queries are short and shaped by what they show, but the
    /// planner's estimates for the period-overlap searches grow with
    /// history, and past a size it compiles them (`jit_above_cost`) or
    /// starts workers for them, each of which costs more than the query.
    /// At 10,000,000 past reservations the status query for the next
    /// reservations took 26 ms with JIT and 8–19 ms with two workers,
    /// against 3–5 ms with neither.
    pub fn connect_lazy_with_calendar(
        options: PgConnectOptions,
        size: u32,
        idle: std::time::Duration,
        calendar: bool,
    ) -> Store {
        let options = options.options([
            ("gpures.calendar", if calendar { "on" } else { "off" }),
            ("jit", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .idle_timeout(idle)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect_lazy_with(options);
        Store { pool }
    }

    /// The pool, for the change listener (which needs a session of its own).
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

    /// Opens a transaction.
    ///
    /// # Errors
    /// No connection could be had.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// A connection for reads outside a transaction.
    ///
    /// # Errors
    /// No connection could be had.
    pub async fn acquire(&self) -> Result<Conn> {
        Ok(self.pool.acquire().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What a committed change touched, as announced on [`CHANGES_CHANNEL`]:
/// the daemons turn it into the delta their clients apply, so that a
/// booking costs each open TUI a few rows and not a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Anything the others do not name (resources, blocks, accounts, lab
    /// policy, calendar repair): clients reload everything.
    Everything,
    /// These reservations changed (made, moved, ended, cancelled, approved).
    Reservations(Vec<Uuid>),
    /// The waiting queue changed.
    Queue,
    /// This account's notifications changed.
    Inbox(i64),
    /// A calendar delivery failed (the admins' outbox status).
    Calendar,
}

/// Most reservation ids one announcement names; a change of more (a long
/// series) is announced as [`Changed::Everything`], well inside the 8,000
/// bytes a NOTIFY payload may have.
const ANNOUNCED_IDS_MAX: usize = 100;

impl Changed {
    /// The NOTIFY payload: `""` (everything, also what any payload this
    /// version does not read means), `r:ID,ID…`, `q`, `n:USER`, `c`.
    pub fn payload(&self) -> String {
        match self {
            Changed::Reservations(ids) if !ids.is_empty() && ids.len() <= ANNOUNCED_IDS_MAX => {
                let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                format!("r:{}", ids.join(","))
            }
            Changed::Reservations(_) | Changed::Everything => String::new(),
            Changed::Queue => "q".to_owned(),
            Changed::Inbox(user) => format!("n:{user}"),
            Changed::Calendar => "c".to_owned(),
        }
    }

    /// Reads a payload; anything not understood is [`Changed::Everything`].
    pub fn parse(payload: &str) -> Changed {
        let parsed = match payload.split_once(':') {
            Some(("r", ids)) => ids
                .split(',')
                .map(Uuid::parse_str)
                .collect::<std::result::Result<Vec<_>, _>>()
                .ok()
                .filter(|ids| !ids.is_empty())
                .map(Changed::Reservations),
            Some(("n", user)) => user.parse().ok().map(Changed::Inbox),
            _ => match payload {
                "q" => Some(Changed::Queue),
                "c" => Some(Changed::Calendar),
                _ => None,
            },
        };
        parsed.unwrap_or(Changed::Everything)
    }
}

/// Announces `change` to every daemon on this database when the transaction
/// commits (PostgreSQL delivers NOTIFY only on commit, and folds duplicates).
pub async fn notify(conn: &mut PgConnection, change: &Changed) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(change.payload())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Announces on commit that account `user_id` changed: every daemon drops it
/// from its account cache.
pub async fn notify_user(conn: &mut PgConnection, user_id: i64) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(USERS_CHANNEL)
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reads_back_from_its_payload() {
        let ids = vec![Uuid::new_v4(), Uuid::new_v4()];
        for change in [
            Changed::Everything,
            Changed::Reservations(ids),
            Changed::Queue,
            Changed::Inbox(42),
            Changed::Calendar,
        ] {
            assert_eq!(Changed::parse(&change.payload()), change);
        }
    }

    #[test]
    fn what_cannot_be_read_or_named_means_everything() {
        let many: Vec<Uuid> = (0..=ANNOUNCED_IDS_MAX).map(|_| Uuid::new_v4()).collect();
        assert_eq!(Changed::Reservations(many).payload(), "");
        assert!(
            Changed::Reservations(vec![Uuid::new_v4(); ANNOUNCED_IDS_MAX])
                .payload()
                .len()
                < 8_000
        );
        for odd in ["r:", "r:nope", "n:x", "x", "r:,", "queue"] {
            assert_eq!(Changed::parse(odd), Changed::Everything, "{odd}");
        }
    }
}
