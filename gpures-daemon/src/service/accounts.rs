//! Accounts: register, login, token verification against the connection's
//! Unix user ([`Service::authenticate`]), account changes, and the
//! [`AccountCache`] that spares a database round trip per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gpures_proto::{LoginReply, RegisterRequest, UserInfo, UserPage};

use chrono::Utc;

use super::{Actor, Entity, Error, Result, Service, audit_by, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::outbox::{self, Operation};
use crate::store::reservations;
use crate::store::users::{self, UserChange, UserRow};
use crate::store::{self, StoreError};

/// The Unix user at the other end of a connection, read from `SO_PEERCRED`.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: u32,
    pub unix_user: String,
}

/// Accounts recently read to verify a token. Entries are dropped when any
/// daemon changes the account (`NOTIFY gpures_users`), all of them when the
/// listener's connection was lost (notifications may have been missed), and
/// after [`Self::TTL`] in any case. While the listener is down nothing is
/// cached.
#[derive(Debug, Default)]
pub struct AccountCache {
    entries: Mutex<HashMap<i64, (UserRow, Instant)>>,
    listening: AtomicBool,
    /// Bumped by every invalidation: a row read before one is not cached
    /// after it (it may predate the change that caused it).
    generation: AtomicU64,
}

impl AccountCache {
    /// How long an entry may be used at most.
    pub const TTL: Duration = Duration::from_secs(30);
    /// Entries kept at most (a bound on memory).
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, id: i64) -> Option<UserRow> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(&id)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(row, _)| row.clone())
    }

    /// The generation to pass to [`Self::put`], read before the database.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `row` unless an invalidation happened since `generation`.
    fn put(&self, row: UserRow, generation: u64) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if self.generation() != generation {
                return;
            }
            if entries.len() > Self::MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(row.id, (row, Instant::now()));
        }
    }

    /// Drops one account (it changed).
    pub fn forget(&self, id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.remove(&id);
        }
    }

    /// Called by the listener: `true` once it listens, `false` when its
    /// connection is gone. Either way the cache starts empty.
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }
}

impl Service {
    /// The actor behind `token`, if the token is genuine, current, and
    /// presented from the Unix user it was issued to.
    ///
    /// # Errors
    /// `Unauthenticated` for any bad token; `Unavailable` when the account
    /// cannot be read.
    pub async fn authenticate(&self, peer: &Peer, token: &str) -> Result<Actor> {
        let claims = self.inner.auth.verify(token)?;
        if claims.unix_user != peer.unix_user {
            tracing::warn!(
                peer = %peer.unix_user,
                token_user = %claims.unix_user,
                "token presented from another Unix user"
            );
            return Err(Error::Unauthenticated);
        }
        let id: i64 = claims.sub.parse().map_err(|_| Error::Unauthenticated)?;
        let cache = &self.inner.accounts;
        let generation = cache.generation();
        let row = match cache.get(id) {
            Some(row) => row,
            None => {
                let mut conn = self.store().acquire().await?;
                match users::by_id(&mut conn, id).await {
                    Ok(row) => {
                        cache.put(row.clone(), generation);
                        row
                    }
                    Err(StoreError::NotFound) => return Err(Error::Unauthenticated),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if row.disabled || row.token_version != claims.ver || row.unix_user != claims.unix_user {
            return Err(Error::Unauthenticated);
        }
        Ok(Actor::signed_in(row.info()))
    }

    /// Creates a member account bound to the caller's Unix user.
    ///
    /// # Errors
    /// Invalid fields, an email already registered, store failures.
    pub async fn register(&self, peer: &Peer, req: RegisterRequest) -> Result<UserInfo> {
        let email = validate::email(&req.email)?;
        let name = validate::display_name(&req.display_name)?;
        validate::new_password(&req.password)?;
        let _queued = self
            .inner
            .auth
            .queues()
            .enter(peer.uid, self.settings().hash_queue_per_user)?;
        let hash = self.inner.auth.hash_password(req.password).await?;
        let svc = self.clone();
        let unix_user = peer.unix_user.clone();
        let row = self
            .transaction(async move {
                let mut tx = svc.store().begin().await?;
                // One person, one account: the Unix user is the identity.
                let bound = users::bound_to(&mut tx, &unix_user).await?;
                if let Some(off) = bound.iter().find(|u| u.disabled) {
                    return Err(Error::invalid(
                        "unix_user",
                        format!(
                            "the account of this Unix user ({}) is disabled: ask the host admin \
                             (gpures-daemon user enable)",
                            off.email
                        ),
                    ));
                }
                let limit = svc.settings().accounts_per_unix_user;
                if bound.len() >= limit {
                    let emails: Vec<&str> = bound.iter().map(|u| u.email.as_str()).collect();
                    return Err(Error::invalid(
                        "unix_user",
                        format!(
                            "this Unix user already has an account ({}): log in with it \
                             (a shared lab account needs [auth] accounts_per_unix_user raised \
                             by the host admin)",
                            emails.join(", ")
                        ),
                    ));
                }
                let row = users::insert(&mut tx, &email, &name, &hash, &unix_user)
                    .await
                    .map_err(Error::duplicate("email", "already registered"))?;
                let by = audit::By {
                    user_id: Some(row.id),
                    unix_user: &unix_user,
                };
                let target = Target {
                    user: Some(row.id),
                    ..Target::default()
                };
                audit::record(&mut tx, by, AuditAction::UserRegister, target).await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        tracing::info!(user_id = row.id, unix_user = %peer.unix_user, "user registered");
        Ok(row.info())
    }

    /// Checks a password and issues a token usable from the bound Unix user.
    ///
    /// # Errors
    /// `Unauthenticated` for a wrong email or password or another Unix user
    /// (one answer for all three), `Throttled` while the email is locked out
    /// or the caller's hashing queue is full, `Forbidden` for a disabled
    /// account.
    pub async fn login(&self, peer: &Peer, email: String, password: String) -> Result<LoginReply> {
        let auth = &self.inner.auth;
        if !validate::login_fits(&email, &password) {
            return Err(Error::Unauthenticated);
        }
        let email = email.trim().to_owned();
        let _queued = auth
            .queues()
            .enter(peer.uid, self.settings().hash_queue_per_user)?;
        let attempt = auth.throttle().begin(&email)?;
        // An email that cannot exist is checked like an unknown one, so the
        // answer and its timing are the same.
        let row = match validate::email(&email) {
            Err(_) => None,
            Ok(_) => {
                let mut conn = self.store().acquire().await?;
                match users::by_email(&mut conn, &email).await {
                    Ok(row) => Some(row),
                    Err(StoreError::NotFound) => None,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let ok = auth
            .verify_password(row.as_ref().map(|r| r.password_hash.clone()), password)
            .await;
        // The right password from another Unix user is a failed login like any
        // other: same answer, and it does not reset the throttle.
        let Some(row) = row.filter(|r| ok && r.unix_user == peer.unix_user) else {
            attempt.finish(false);
            tracing::info!(unix_user = %peer.unix_user, "failed login");
            return Err(Error::Unauthenticated);
        };
        attempt.finish(true);
        if row.disabled {
            return Err(Error::Forbidden);
        }
        let (token, expires_at) = auth.issue(row.id, &row.unix_user, row.token_version)?;
        Ok(LoginReply {
            token,
            expires_at,
            user: row.info(),
        })
    }

    /// Revokes every token of the actor's account, the current one included.
    ///
    /// # Errors
    /// The host admin has no tokens (`Forbidden`); store failures.
    pub async fn logout_everywhere(&self, actor: &Actor) -> Result<()> {
        let email = actor.account()?.email.clone();
        self.change_user_as(actor, &email, UserChange::RevokeTokens)
            .await
            .map(|_| ())
    }

    /// One page of the accounts after id `after` (admins and the host admin).
    ///
    /// # Errors
    /// `Forbidden` for members; store failures.
    pub async fn list_users(
        &self,
        actor: &Actor,
        after: Option<i64>,
        limit: u32,
    ) -> Result<UserPage> {
        actor.require_admin()?;
        let limit = validate::page_limit(limit);
        let mut conn = self.store().acquire().await?;
        let mut rows = users::page(&mut conn, after, limit + 1).await?;
        let next = if rows.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(UserPage {
            users: rows.iter().map(UserRow::info).collect(),
            next,
        })
    }

    /// Changes an account (admins and the host admin).
    ///
    /// # Errors
    /// `Forbidden` for members, `NotFound` for an unknown email.
    pub async fn change_user(
        &self,
        actor: &Actor,
        email: &str,
        change: UserChange,
    ) -> Result<UserInfo> {
        actor.require_admin()?;
        validate::lookup_text("email", email)?;
        let change = match change {
            UserChange::Bind(unix_user) => {
                validate::lookup_text("unix_user", &unix_user)?;
                UserChange::Bind(unix_user)
            }
            UserChange::Disable(Some(reason)) => {
                let reason = validate::reason(&reason)?;
                UserChange::Disable(Some(reason))
            }
            other => other,
        };
        self.change_user_as(actor, email, change).await
    }

    /// Changes an account, audited as `actor`, and drops it from the cache
    /// of this daemon at once (other daemons drop it on the NOTIFY).
    async fn change_user_as(
        &self,
        actor: &Actor,
        email: &str,
        change: UserChange,
    ) -> Result<UserInfo> {
        let action = match &change {
            UserChange::Role(_) => AuditAction::UserRole,
            UserChange::Disable(_) => AuditAction::UserDisable,
            UserChange::Enable => AuditAction::UserEnable,
            UserChange::Bind(_) => AuditAction::UserBind,
            UserChange::RevokeTokens => AuditAction::UserRevokeTokens,
        };
        let (svc, actor, email) = (self.clone(), actor.clone(), email.to_owned());
        let row = self
            .transaction(async move {
                let mut tx = svc.store().begin().await?;
                let row = users::change(&mut tx, &email, &change)
                    .await
                    .map_err(Error::not_found(Entity::User))?;
                let name = actor.audit_name();
                let target = Target {
                    user: Some(row.id),
                    ..Target::default()
                };
                let reason = match &change {
                    UserChange::Disable(reason) => reason.as_deref(),
                    _ => None,
                };
                audit::record_with(&mut tx, audit_by(&actor, &name), action, target, reason)
                    .await?;
                if let Some(reason) = reason {
                    // The person's reservations to come are cancelled and
                    // the running ones end now, each with the reason.
                    let stopped =
                        reservations::stop_user_future(&mut tx, row.id, Utc::now(), reason).await?;
                    for (rid, resource, cancelled) in stopped {
                        let (op, act) = if cancelled {
                            (Operation::Delete, AuditAction::ReservationCancel)
                        } else {
                            (Operation::Upsert, AuditAction::ReservationRelease)
                        };
                        outbox::enqueue(&mut tx, rid, op).await?;
                        let target = Target {
                            reservation: Some(rid),
                            resource: Some(resource),
                            user: Some(row.id),
                        };
                        audit::record_with(
                            &mut tx,
                            audit_by(&actor, &name),
                            act,
                            target,
                            Some(reason),
                        )
                        .await?;
                    }
                }
                store::notify_user(&mut tx, row.id).await?;
                store::notify_change(&mut tx).await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        self.inner.accounts.forget(row.id);
        Ok(row.info())
    }
}
