//! The only way in: every RPC and every host-admin command is a method of
//! [`Service`], called with an [`Actor`]. The wire layer authenticates,
//! delegates and converts [`Error`] into `ApiError`; it runs no SQL and
//! checks no input.
//!
//! - [`validate`]: every check of client input, in one place.
//! - [`accounts`]: register, login, tokens, account changes and the
//!   [`AccountCache`]; [`auth`] holds the primitives (argon2id, JWT, throttle).
//! - [`booking`]: reservations, the timeline, listings and availability.
//! - [`resources`]: GPUs and servers, and discovery from the probe.
//! - [`status`]: who holds each GPU, who runs on it, and the flags.
//! - [`notify`]: the inbox and the deliveries beyond it ([`notify::push`]).
//! - [`reclaim`]: notices of unreserved use and idle reclaim on this host.
//! - [`enforce`]: stopping or ending unreserved use, where the host says so.
//! - [`policy`]: groups and lab rules, checked in every booking transaction;
//!   [`approvals`]: exceptions an admin approves; [`blocks`]: maintenance
//!   windows; [`series`]: recurring bookings.
//!
//! The service owns every transaction. A transaction that writes runs in a
//! task of its own ([`Service::transaction`]), so a client deadline that
//! drops the RPC handler never cuts it off between statements, and the
//! daemon's shutdown waits for those tasks ([`Service::drain`]).

pub mod accounts;
pub mod approvals;
pub mod auth;
pub mod blocks;
pub mod booking;
pub mod changes;
pub mod enforce;
pub mod feeds;
pub mod jobs;
pub mod notify;
pub mod policy;
pub mod queue;
pub mod reclaim;
pub mod report;
pub mod resources;
pub mod series;
pub mod slots;
pub mod status;
pub mod usage;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use gpures_proto::{Holder, Role, UserInfo};
use thiserror::Error;
use tokio::sync::Notify;

pub use accounts::{AccountCache, PasswordReset, Peer};
pub use auth::Auth;

use crate::store::audit::By;
use crate::store::{Store, StoreError};

/// What a thing that was not found is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Reservation,
    Booking,
    Resource,
    User,
    Session,
    QueueRequest,
    Group,
    Policy,
    Block,
    Series,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Reservation => "reservation",
            Entity::Booking => "booking",
            Entity::Resource => "resource",
            Entity::User => "user",
            Entity::Session => "session",
            Entity::QueueRequest => "queue request",
            Entity::Group => "group",
            Entity::Policy => "policy rule",
            Entity::Block => "block",
            Entity::Series => "series",
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error of the service layer. `Display` is the real cause, which
/// host-admin commands print; the wire shows clients only what
/// `From<Error> for ApiError` lets through.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(Entity),
    /// The period is taken; never empty (a conflict names who holds it).
    #[error("the slot is taken by {} reservation(s)", .0.len())]
    Conflict(Vec<Holder>),
    /// An admin blocked the period (maintenance); never empty.
    #[error("blocked for maintenance ({} block(s))", .0.len())]
    Blocked(Vec<gpures_proto::Block>),
    /// Occurrences of a recurring booking that cannot be booked, with why;
    /// nothing was booked. Never empty.
    #[error("{} occurrence(s) of the series cannot be booked", .0.len())]
    Series(Vec<(gpures_proto::Period, Error)>),
    /// A lab policy refuses it; the refusal has the numbers.
    #[error("refused by lab policy: {0}")]
    Policy(Box<gpures_proto::PolicyRefusal>),
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("permission denied")]
    Forbidden,
    /// No valid session: the token is missing, expired, revoked, forged or
    /// presented from another Unix user.
    #[error("not signed in")]
    Unauthenticated,
    /// Peer sign-in found no account bound to this Unix user.
    #[error("the Unix user {0} has no account")]
    NoAccount(String),
    #[error("too many attempts: try again in {} s", .retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    /// The database cannot serve right now; retrying later is safe.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure, with its cause.
    #[error("{0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// Maps a store's `NotFound` to `entity`, anything else as usual.
    pub fn not_found(entity: Entity) -> impl Fn(StoreError) -> Error {
        move |e| match e {
            StoreError::NotFound => Error::NotFound(entity),
            e => e.into(),
        }
    }

    /// Maps a store's `Duplicate` to an invalid `field`, anything else as usual.
    pub fn duplicate(field: &'static str, reason: &'static str) -> impl Fn(StoreError) -> Error {
        move |e| match e {
            StoreError::Duplicate(_) => Error::invalid(field, reason),
            e => e.into(),
        }
    }
}

impl From<StoreError> for Error {
    /// The store errors the service did not map where it knew what they mean:
    /// an outage is `Unavailable`; a `NotFound`, a duplicate or an overlap that
    /// reaches here is a bug, reported as internal with its cause.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => Error::Unavailable(reason),
            StoreError::Retry => {
                Error::Unavailable("the database kept aborting the transaction".into())
            }
            e => Error::Internal(Box::new(e)),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<auth::AuthError> for Error {
    fn from(e: auth::AuthError) -> Self {
        match e {
            auth::AuthError::InvalidToken | auth::AuthError::UnknownKey(_) => {
                Error::Unauthenticated
            }
            auth::AuthError::Throttled(retry_after) => Error::Throttled { retry_after },
            e => Error::Internal(Box::new(e)),
        }
    }
}

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Actor {
    /// A signed-in member.
    Member(UserInfo),
    /// A signed-in admin.
    Admin(UserInfo),
    /// Root or the daemon's user running `gpures-daemon` on the host: acts
    /// without an account, audited as `host:<unix_user>`.
    HostAdmin { unix_user: String },
}

impl Actor {
    /// The actor a signed-in account is.
    pub fn signed_in(user: UserInfo) -> Actor {
        match user.role {
            Role::Admin => Actor::Admin(user),
            Role::Member => Actor::Member(user),
        }
    }

    /// The host admin, named after this process's Unix user.
    pub fn host_admin() -> Actor {
        Actor::HostAdmin {
            unix_user: crate::host::unix::name_of_uid(crate::host::unix::euid()),
        }
    }

    pub fn is_admin(&self) -> bool {
        !matches!(self, Actor::Member(_))
    }

    /// The account, unless the host admin acts.
    pub fn user(&self) -> Option<&UserInfo> {
        match self {
            Actor::Member(u) | Actor::Admin(u) => Some(u),
            Actor::HostAdmin { .. } => None,
        }
    }

    /// The account, for actions only an account can take (booking).
    ///
    /// # Errors
    /// `Forbidden` for the host admin.
    pub fn account(&self) -> Result<&UserInfo> {
        self.user().ok_or(Error::Forbidden)
    }

    /// Whether the actor may change things owned by `user_id`.
    pub fn owns_or_admin(&self, user_id: i64) -> bool {
        self.is_admin() || self.user().is_some_and(|u| u.id == user_id)
    }

    fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// How the audit log names the actor.
    fn audit_name(&self) -> String {
        match self {
            Actor::Member(u) | Actor::Admin(u) => u.unix_user.clone(),
            Actor::HostAdmin { unix_user } => format!("host:{unix_user}"),
        }
    }
}

/// Limits from the configuration that the rules apply.
#[derive(Clone, Debug)]
pub struct Rules {
    pub max_length: TimeDelta,
    pub past_grace: TimeDelta,
    /// How far ahead members may book.
    pub horizon: TimeDelta,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_length: TimeDelta::days(14),
            past_grace: TimeDelta::minutes(5),
            horizon: TimeDelta::days(90),
        }
    }
}

/// What the service needs besides the store.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rules: Rules,
    /// This daemon's host name (for new resources and the status report).
    pub host: String,
    /// How long a running reservation may see no process before it is flagged.
    pub idle_after: TimeDelta,
    /// Whether this daemon mirrors into Google Calendar (for `status`).
    pub calendar_enabled: bool,
    /// Password checks of one Unix user that may wait for hashing.
    pub hash_queue_per_user: usize,
    /// Failed password checks one Unix user may make per minute.
    pub failed_logins_per_minute: u32,
    /// Accounts one Unix user may hold (1: the Unix account is the person).
    pub accounts_per_unix_user: usize,
    /// Whether an empty token signs in by the connection's Unix user.
    pub peer_login: bool,
    /// A session unused this long ends.
    pub session_idle: TimeDelta,
    /// A session ends this long after its login.
    pub session_max: TimeDelta,
    /// Where notifications go besides the inbox.
    pub notify: notify::NotifyRules,
    /// Idle reclaim (off by default).
    pub reclaim: reclaim::ReclaimRules,
    /// Acting on unreserved use (warn by default).
    pub enforce: enforce::EnforceRules,
    /// Lab policy for everyone from `[policy]` in `gpures.toml`; rules in
    /// the database replace them.
    pub policy: Vec<gpures_proto::Policy>,
    /// How long per-minute usage rows are kept.
    pub usage_keep: TimeDelta,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rules: Rules::default(),
            host: crate::host::unix::system_host_name(),
            idle_after: TimeDelta::minutes(30),
            calendar_enabled: false,
            hash_queue_per_user: 4,
            failed_logins_per_minute: 30,
            accounts_per_unix_user: 1,
            peer_login: true,
            session_idle: TimeDelta::days(30),
            session_max: TimeDelta::days(365),
            notify: notify::NotifyRules::default(),
            reclaim: reclaim::ReclaimRules::default(),
            enforce: enforce::EnforceRules::default(),
            policy: Vec::new(),
            usage_keep: TimeDelta::days(90),
        }
    }
}

/// The service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    auth: Auth,
    accounts: Arc<AccountCache>,
    settings: Settings,
    in_flight: InFlight,
    /// Limits how often a token with an unknown key makes us read the keys.
    key_reload: Gate,
    /// What enforcement saw and did, between passes.
    enforcer: enforce::EnforcerCell,
    /// Usage minutes still open.
    meter: usage::MeterCell,
    /// Every host's GPU record, parsed once per write.
    telemetry: crate::store::telemetry::Cache,
}

/// Lets one caller through at most once per [`Gate::EVERY`].
#[derive(Debug, Default)]
struct Gate {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Gate {
    const EVERY: Duration = Duration::from_secs(1);

    fn try_begin(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }
}

impl Service {
    pub fn new(store: Store, auth: Auth, settings: Settings) -> Service {
        Service {
            inner: Arc::new(Inner {
                store,
                auth,
                accounts: Arc::new(AccountCache::default()),
                settings,
                in_flight: InFlight::default(),
                key_reload: Gate::default(),
                enforcer: enforce::EnforcerCell::default(),
                meter: usage::MeterCell::default(),
                telemetry: crate::store::telemetry::Cache::default(),
            }),
        }
    }

    /// The accounts read to verify tokens, for the change listener that
    /// invalidates them.
    pub fn account_cache(&self) -> Arc<AccountCache> {
        Arc::clone(&self.inner.accounts)
    }

    /// Whether an empty token signs in by the connection's Unix user.
    pub fn peer_login(&self) -> bool {
        self.inner.settings.peer_login
    }

    /// This daemon's host name.
    pub fn host(&self) -> &str {
        &self.inner.settings.host
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn telemetry(&self) -> &crate::store::telemetry::Cache {
        &self.inner.telemetry
    }

    fn enforcer(&self) -> &enforce::EnforcerCell {
        &self.inner.enforcer
    }

    fn usage_meter(&self) -> &usage::MeterCell {
        &self.inner.meter
    }

    fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Runs a writing transaction in its own task, counted until it ends, so
    /// a dropped RPC handler cannot cut it off and shutdown can wait for it.
    async fn transaction<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let guard = self.inner.in_flight.enter(Arc::clone(&self.inner));
        tokio::spawn(async move {
            let _guard = guard;
            work.await
        })
        .await
        .map_err(|e| Error::Internal(Box::new(e)))?
    }

    /// Waits until no transaction task is running (at shutdown, after the
    /// server stopped taking calls).
    pub async fn drain(&self) {
        self.inner.in_flight.wait_idle().await;
    }
}

/// Counts transaction tasks in flight.
#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a running transaction task.
struct InFlightGuard(Arc<Inner>);

impl InFlight {
    fn enter(&self, owner: Arc<Inner>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(owner)
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.in_flight.idle.notify_waiters();
        }
    }
}

/// Records `action` by `actor` on the account `user_id`.
async fn audit_user(
    conn: &mut sqlx::PgConnection,
    actor: &Actor,
    action: crate::store::audit::AuditAction,
    user_id: i64,
) -> Result<()> {
    let name = actor.audit_name();
    let target = crate::store::audit::Target {
        user: Some(user_id),
        ..Default::default()
    };
    crate::store::audit::record(conn, audit_by(actor, &name), action, target).await?;
    Ok(())
}

/// The audit `By` of an actor (kept alive by the caller's `name`).
fn audit_by<'a>(actor: &Actor, name: &'a str) -> By<'a> {
    By {
        user_id: actor.user().map(|u| u.id),
        unix_user: name,
    }
}
