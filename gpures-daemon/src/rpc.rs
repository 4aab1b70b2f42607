//! The tarpc glue: [`Connection`] implements [`Gpures`] for one client
//! connection, whose Unix user ([`Peer`]) was read from `SO_PEERCRED` when it
//! was accepted. Each call checks the hello, verifies the token against the
//! peer, calls the [`Service`], and turns its errors into [`ApiError`] in one
//! place ([`to_api`]), logging internal ones with an id the client is shown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use gpures_proto::{
    ApiError, Booking, BookingRequest, Gpures, HelloReply, Holder, LoginReply, NewResource,
    PROTOCOL_VERSION, Period, RegisterRequest, Reservation, ReservationChange, ReservationFilter,
    Resource, ResourceStatus, ResourceUpdate, Role, StatusReport, Timeline, Token, UserInfo,
    limits, text,
};
use tarpc::context::Context;
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth::Auth;
use crate::service::{Actor, Service, ServiceError};
use crate::store::{StoreError, UserChange};

/// State shared by every connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shared {
    pub service: Service,
    pub auth: Auth,
    /// Bumped on every committed change any daemon announces.
    pub changes: watch::Receiver<u64>,
    /// Turns true when the daemon shuts down: long polls return at once.
    pub shutdown: watch::Receiver<bool>,
    pub host: String,
    /// How long a running reservation may see no process before it is flagged.
    pub idle_after: chrono::TimeDelta,
    /// Accounts read to verify tokens, dropped on every change to them.
    pub users: std::sync::Arc<crate::store::UserCache>,
    /// Whether this daemon mirrors into Google Calendar (for `status`).
    pub calendar_enabled: bool,
}

/// The Unix user at the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: u32,
    pub unix_user: String,
}

/// One client connection. tarpc clones it for every request.
#[derive(Clone, Debug)]
pub struct Connection {
    shared: Shared,
    peer: Arc<Peer>,
    greeted: Arc<AtomicBool>,
}

impl Connection {
    pub fn new(shared: Shared, peer: Peer) -> Connection {
        Connection {
            shared,
            peer: Arc::new(peer),
            greeted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Refuses every call before a successful hello: a client of another
    /// protocol version must not have its frames misread.
    fn greeted(&self) -> Result<(), ApiError> {
        if self.greeted.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(ApiError::ProtocolMismatch {
                daemon: PROTOCOL_VERSION,
                client: 0,
            })
        }
    }

    /// The account behind `token`, if the token is genuine, current, and
    /// presented from the Unix user it was issued to.
    async fn authenticate(&self, token: &str) -> Result<Actor, ApiError> {
        self.greeted()?;
        let claims = self
            .shared
            .auth
            .verify(token)
            .map_err(|_| ApiError::Unauthenticated)?;
        if claims.unix_user != self.peer.unix_user {
            tracing::warn!(
                peer = %self.peer.unix_user,
                token_user = %claims.unix_user,
                "token presented from another Unix user"
            );
            return Err(ApiError::Unauthenticated);
        }
        let id: i64 = claims.sub.parse().map_err(|_| ApiError::Unauthenticated)?;
        let generation = self.shared.users.generation();
        let row = match self.shared.users.get(id) {
            Some(row) => row,
            None => match self.shared.service.store().user_by_id(id).await {
                Ok(row) => {
                    self.shared.users.put(row.clone(), generation);
                    row
                }
                Err(StoreError::NotFound) => return Err(ApiError::Unauthenticated),
                Err(e) => return Err(to_api(e.into())),
            },
        };
        if row.disabled || row.token_version != claims.ver || row.unix_user != claims.unix_user {
            return Err(ApiError::Unauthenticated);
        }
        Ok(Actor { user: row.info() })
    }

    async fn admin(&self, token: &str) -> Result<Actor, ApiError> {
        let actor = self.authenticate(token).await?;
        if !actor.is_admin() {
            return Err(ApiError::PermissionDenied);
        }
        Ok(actor)
    }
}

/// Maps a service error to the wire, logging what the client must not see.
pub fn to_api(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Api(api) => api,
        ServiceError::Store(StoreError::Unavailable(reason)) => {
            tracing::warn!(%reason, "database unavailable");
            ApiError::Unavailable
        }
        ServiceError::Store(StoreError::Retry) => ApiError::Unavailable,
        other => {
            let id = format!("{:08x}", rand::random::<u32>());
            tracing::error!(error_id = %id, error = %other, "internal error");
            ApiError::Internal { id }
        }
    }
}

fn store_err(e: StoreError) -> ApiError {
    to_api(e.into())
}

fn check_window(window: &Period) -> Result<(), ApiError> {
    if window.end <= window.start {
        return Err(ApiError::invalid(
            "window",
            "the end must be after the start",
        ));
    }
    if window.end - window.start > chrono::TimeDelta::days(limits::WINDOW_MAX_DAYS) {
        return Err(ApiError::invalid(
            "window",
            format!("at most {} days", limits::WINDOW_MAX_DAYS),
        ));
    }
    Ok(())
}

/// A plausible email: one `@`, a non-empty local part, a dotted domain, no
/// spaces or control characters. Deliverability is not our business.
fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let bad = |reason: &str| Err(ApiError::invalid("email", reason));
    if email.chars().count() > limits::EMAIL_MAX_CHARS {
        return bad("too long");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) || text::needs_sanitizing(email) {
        return bad("must not contain spaces or control characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("must look like name@example.org");
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return bad("must look like name@example.org");
    }
    Ok(email.to_owned())
}

impl Gpures for Connection {
    async fn hello(self, _: Context, client_protocol: u32) -> Result<HelloReply, ApiError> {
        if client_protocol != PROTOCOL_VERSION {
            return Err(ApiError::ProtocolMismatch {
                daemon: PROTOCOL_VERSION,
                client: client_protocol,
            });
        }
        self.greeted.store(true, Ordering::Release);
        Ok(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: self.shared.host.clone(),
            peer_unix_user: self.peer.unix_user.clone(),
        })
    }

    async fn register(self, _: Context, req: RegisterRequest) -> Result<UserInfo, ApiError> {
        self.greeted()?;
        let email = check_email(&req.email)?;
        let name = text::sanitize_trimmed(&req.display_name);
        let name_len = name.chars().count();
        if name_len == 0 || name_len > limits::DISPLAY_NAME_MAX_CHARS {
            return Err(ApiError::invalid(
                "display_name",
                format!("1 to {} characters", limits::DISPLAY_NAME_MAX_CHARS),
            ));
        }
        let pw_len = req.password.chars().count();
        if !(limits::PASSWORD_MIN_CHARS..=limits::PASSWORD_MAX_CHARS).contains(&pw_len) {
            return Err(ApiError::invalid(
                "password",
                format!(
                    "{} to {} characters",
                    limits::PASSWORD_MIN_CHARS,
                    limits::PASSWORD_MAX_CHARS
                ),
            ));
        }
        let hash = self
            .shared
            .auth
            .hash_password(req.password)
            .await
            .map_err(|e| to_api(ServiceError::Join(e.to_string())))?;
        match self
            .shared
            .service
            .store()
            .insert_user(&email, &name, &hash, &self.peer.unix_user)
            .await
        {
            Ok(row) => {
                tracing::info!(user_id = row.id, unix_user = %self.peer.unix_user, "user registered");
                Ok(row.info())
            }
            Err(StoreError::Duplicate(_)) => Err(ApiError::invalid("email", "already registered")),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn login(
        self,
        _: Context,
        email: String,
        password: String,
    ) -> Result<LoginReply, ApiError> {
        self.greeted()?;
        let auth = &self.shared.auth;
        if email.chars().count() > limits::EMAIL_MAX_CHARS
            || password.chars().count() > limits::PASSWORD_MAX_CHARS
        {
            return Err(ApiError::Unauthenticated);
        }
        let email = email.trim().to_owned();
        if let Err(crate::auth::AuthError::Throttled(left)) = auth.throttle().check(&email) {
            return Err(ApiError::RateLimited {
                retry_after_secs: left.as_secs().max(1),
            });
        }
        let row = match self.shared.service.store().user_by_email(&email).await {
            Ok(row) => Some(row),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(store_err(e)),
        };
        let ok = auth
            .verify_password(row.as_ref().map(|r| r.password_hash.clone()), password)
            .await;
        let Some(row) = row.filter(|_| ok) else {
            auth.throttle().failure(&email);
            tracing::info!(unix_user = %self.peer.unix_user, "failed login");
            return Err(ApiError::Unauthenticated);
        };
        auth.throttle().success(&email);
        if row.disabled {
            return Err(ApiError::PermissionDenied);
        }
        if row.unix_user != self.peer.unix_user {
            return Err(ApiError::invalid(
                "unix_user",
                format!(
                    "this account is bound to the Unix user {}: log in from that account, \
                     or ask the host admin to run `gpures-daemon user bind`",
                    row.unix_user
                ),
            ));
        }
        let (token, expires_at) = auth
            .issue(row.id, &row.unix_user, row.token_version)
            .map_err(|e| to_api(ServiceError::Join(e.to_string())))?;
        Ok(LoginReply {
            token,
            expires_at,
            user: row.info(),
        })
    }

    async fn whoami(self, _: Context, token: Token) -> Result<UserInfo, ApiError> {
        Ok(self.authenticate(&token).await?.user)
    }

    async fn logout_everywhere(self, _: Context, token: Token) -> Result<(), ApiError> {
        let actor = self.authenticate(&token).await?;
        self.shared
            .service
            .store()
            .change_user(
                &actor.user.email,
                UserChange::RevokeTokens,
                Some(actor.user.id),
                &actor.user.unix_user,
            )
            .await
            .map_err(store_err)?;
        self.shared.users.forget(actor.user.id);
        Ok(())
    }

    async fn list_resources(
        self,
        _: Context,
        token: Token,
        include_inactive: bool,
    ) -> Result<Vec<Resource>, ApiError> {
        self.authenticate(&token).await?;
        self.shared
            .service
            .store()
            .list_resources(include_inactive)
            .await
            .map_err(store_err)
    }

    async fn create_resource(
        self,
        _: Context,
        token: Token,
        mut resource: NewResource,
    ) -> Result<Resource, ApiError> {
        let actor = self.admin(&token).await?;
        if resource.host.trim().is_empty() {
            resource.host = self.shared.host.clone();
        }
        self.shared
            .service
            .create_resource(Some(&actor), resource)
            .await
            .map_err(to_api)
    }

    async fn update_resource(
        self,
        _: Context,
        token: Token,
        id: i64,
        update: ResourceUpdate,
    ) -> Result<Resource, ApiError> {
        let actor = self.admin(&token).await?;
        self.shared
            .service
            .update_resource(Some(&actor), id, update)
            .await
            .map_err(to_api)
    }

    async fn timeline(
        self,
        _: Context,
        token: Token,
        window: Period,
    ) -> Result<Timeline, ApiError> {
        self.authenticate(&token).await?;
        check_window(&window)?;
        let store = self.shared.service.store();
        let resources = store.list_resources(false).await.map_err(store_err)?;
        let reservations = store.active_in_window(window).await.map_err(store_err)?;
        Ok(Timeline {
            window,
            resources,
            reservations,
        })
    }

    async fn list_reservations(
        self,
        _: Context,
        token: Token,
        filter: ReservationFilter,
    ) -> Result<Vec<Reservation>, ApiError> {
        self.authenticate(&token).await?;
        if let Some(window) = &filter.window {
            check_window(window)?;
        }
        self.shared
            .service
            .store()
            .list_reservations(&filter)
            .await
            .map_err(store_err)
    }

    async fn create_booking(
        self,
        _: Context,
        token: Token,
        request: BookingRequest,
    ) -> Result<Booking, ApiError> {
        let actor = self.authenticate(&token).await?;
        self.shared
            .service
            .create_booking(&actor, request)
            .await
            .map_err(to_api)
    }

    async fn update_reservation(
        self,
        _: Context,
        token: Token,
        id: Uuid,
        change: ReservationChange,
    ) -> Result<Reservation, ApiError> {
        let actor = self.authenticate(&token).await?;
        self.shared
            .service
            .update_reservation(&actor, id, change)
            .await
            .map_err(to_api)
    }

    async fn cancel_reservation(
        self,
        _: Context,
        token: Token,
        id: Uuid,
    ) -> Result<Reservation, ApiError> {
        let actor = self.authenticate(&token).await?;
        self.shared
            .service
            .cancel_reservation(&actor, id)
            .await
            .map_err(to_api)
    }

    async fn release_now(
        self,
        _: Context,
        token: Token,
        id: Uuid,
    ) -> Result<Reservation, ApiError> {
        let actor = self.authenticate(&token).await?;
        self.shared
            .service
            .release_now(&actor, id)
            .await
            .map_err(to_api)
    }

    async fn check_availability(
        self,
        _: Context,
        token: Token,
        resources: Vec<i64>,
        period: Period,
        ignore: Option<Uuid>,
    ) -> Result<Vec<Holder>, ApiError> {
        self.authenticate(&token).await?;
        if resources.len() > limits::BOOKING_MAX_RESOURCES {
            return Err(ApiError::invalid("resources", "too many"));
        }
        self.shared
            .service
            .check_availability(&resources, period, ignore)
            .await
            .map_err(to_api)
    }

    async fn status(self, _: Context, token: Token) -> Result<StatusReport, ApiError> {
        let actor = self.authenticate(&token).await?;
        let store = self.shared.service.store();
        let now = Utc::now();
        let resources = store.list_resources(false).await.map_err(store_err)?;
        let (current, next) = store.current_and_next(now).await.map_err(store_err)?;
        let records = store.host_records().await.map_err(store_err)?;
        let recent = store
            .recently_ended(now, chrono::TimeDelta::hours(24))
            .await
            .map_err(store_err)?;
        let users = store.list_users().await.map_err(store_err)?;
        let unix_user_of = |id: i64| {
            users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.unix_user.clone())
        };
        let resources = resources
            .into_iter()
            .map(|resource| {
                let current = current
                    .iter()
                    .find(|r| r.resource_id == resource.id)
                    .cloned();
                let gpu = crate::gpu::telemetry_for(&records, &resource);
                let flags = match gpu {
                    Some(g) => {
                        let ended: Vec<&Reservation> = recent
                            .iter()
                            .filter(|r| r.resource_id == resource.id)
                            .collect();
                        crate::gpu::flags(
                            g,
                            current.as_ref(),
                            &ended,
                            &unix_user_of,
                            now,
                            self.shared.idle_after,
                        )
                    }
                    None => Vec::new(),
                };
                ResourceStatus {
                    next: next.iter().find(|r| r.resource_id == resource.id).cloned(),
                    telemetry: gpu.map(|g| g.telemetry.clone()),
                    flags,
                    current,
                    resource,
                }
            })
            .collect();
        Ok(StatusReport {
            generated_at: now,
            host: self.shared.host.clone(),
            resources,
            hosts: records.iter().map(|r| r.summary()).collect(),
            calendar: if actor.is_admin() {
                Some(
                    store
                        .calendar_status(self.shared.calendar_enabled)
                        .await
                        .map_err(store_err)?,
                )
            } else {
                None
            },
        })
    }

    async fn wait_for_changes(
        self,
        ctx: Context,
        token: Token,
        since: u64,
    ) -> Result<u64, ApiError> {
        self.authenticate(&token).await?;
        let mut changes = self.shared.changes.clone();
        let current = *changes.borrow_and_update();
        if current != since {
            return Ok(current);
        }
        // Answer before the client's deadline, and never hold a call longer
        // than the documented maximum.
        let until_deadline = ctx
            .deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default()
            .saturating_sub(Duration::from_millis(500));
        let budget = until_deadline.min(Duration::from_secs(limits::LONG_POLL_MAX_SECS));
        let mut shutdown = self.shared.shutdown.clone();
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(budget) => {}
            _ = crate::shutdown_requested(&mut shutdown) => {}
        }
        Ok(*changes.borrow())
    }

    async fn list_users(self, _: Context, token: Token) -> Result<Vec<UserInfo>, ApiError> {
        self.admin(&token).await?;
        let rows = self
            .shared
            .service
            .store()
            .list_users()
            .await
            .map_err(store_err)?;
        Ok(rows.iter().map(|r| r.info()).collect())
    }

    async fn set_role(
        self,
        _: Context,
        token: Token,
        email: String,
        role: Role,
    ) -> Result<UserInfo, ApiError> {
        let actor = self.admin(&token).await?;
        let user = self
            .shared
            .service
            .change_user(Some(&actor), &email, UserChange::Role(role))
            .await
            .map_err(to_api)?;
        self.shared.users.forget(user.id);
        Ok(user)
    }

    async fn disable_user(
        self,
        _: Context,
        token: Token,
        email: String,
    ) -> Result<UserInfo, ApiError> {
        let actor = self.admin(&token).await?;
        let user = self
            .shared
            .service
            .change_user(Some(&actor), &email, UserChange::Disable)
            .await
            .map_err(to_api)?;
        self.shared.users.forget(user.id);
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        assert!(check_email("kim@lab.example.kr").is_ok());
        assert_eq!(check_email("  a@b.co ").ok().as_deref(), Some("a@b.co"));
        for bad in [
            "",
            "no-at.example",
            "@x.org",
            "a@nodot",
            "a b@x.org",
            "a@x.org\u{1b}[2J",
            "a@@x.org",
            "a@x.",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} accepted");
        }
    }
}
