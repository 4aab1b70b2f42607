//! Accounts: register, login, sessions, peer sign-in, token verification
//! against the connection's Unix user ([`Service::authenticate`]), password
//! and account changes, signing keys, and the [`AccountCache`] that spares a
//! database round trip per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gpures_proto::{AccountChange, LoginReply, RegisterRequest, SessionInfo, UserInfo, UserPage};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::auth::{AuthError, Claims};
use super::{Actor, Entity, Error, Result, Service, audit_by, audit_user, validate};
use crate::store::audit::{self, AuditAction, Target};
use crate::store::outbox::{self, Operation};
use crate::store::reservations;
use crate::store::sessions::{self, SessionRow};
use crate::store::users::{self, UserChange, UserRow};
use crate::store::{self, StoreError, keys};

/// The Unix user at the other end of a connection, read from `SO_PEERCRED`.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: u32,
    pub unix_user: String,
}

/// How long a one-time reset code is good for.
const RESET_CODE_TTL: TimeDelta = TimeDelta::hours(24);
/// A session's use is written down at most this often (and its expiry moved).
const TOUCH_EVERY: TimeDelta = TimeDelta::hours(1);
/// Sessions listed at most.
const SESSIONS_MAX: i64 = 100;
/// Ended sessions are kept this many days for `gpures sessions` history and
/// audits, then deleted.
const SESSIONS_KEEP_DAYS: i32 = 30;

/// Sessions and peer accounts recently read to authenticate a call. Entries
/// of an account are dropped when any daemon changes it (`NOTIFY
/// gpures_users`), all of them when the listener's connection was lost
/// (notifications may have been missed), and after [`Self::TTL`] in any
/// case. While the listener is down nothing is cached.
#[derive(Debug, Default)]
pub struct AccountCache {
    entries: Mutex<Entries>,
    listening: AtomicBool,
    /// Bumped by every invalidation: a row read before one is not cached
    /// after it (it may predate the change that caused it).
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    /// By session id: the session and its account.
    sessions: HashMap<Uuid, (SessionRow, UserRow, Instant)>,
    /// By Unix user: the accounts bound to it (for peer sign-in).
    peers: HashMap<String, (Vec<UserRow>, Instant)>,
}

impl AccountCache {
    /// How long an entry may be used at most.
    pub const TTL: Duration = Duration::from_secs(30);
    /// Entries kept at most per map (a bound on memory).
    const MAX_ENTRIES: usize = 10_000;

    fn session(&self, sid: Uuid) -> Option<(SessionRow, UserRow)> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .sessions
            .get(&sid)
            .filter(|(_, _, at)| at.elapsed() < Self::TTL)
            .map(|(s, u, _)| (s.clone(), u.clone()))
    }

    fn peer(&self, unix_user: &str) -> Option<Vec<UserRow>> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .peers
            .get(unix_user)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(rows, _)| rows.clone())
    }

    /// The generation to pass to the `put_` methods, read before the database.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs `put` on the entries unless an invalidation happened since
    /// `generation` or nothing may be cached.
    fn put(&self, generation: u64, put: impl FnOnce(&mut Entries)) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if self.generation() != generation {
                return;
            }
            if entries.sessions.len() > Self::MAX_ENTRIES {
                entries.sessions.clear();
            }
            if entries.peers.len() > Self::MAX_ENTRIES {
                entries.peers.clear();
            }
            put(&mut entries);
        }
    }

    fn put_session(&self, session: SessionRow, user: UserRow, generation: u64) {
        self.put(generation, |e| {
            e.sessions
                .insert(session.id, (session, user, Instant::now()));
        });
    }

    fn put_peer(&self, unix_user: &str, rows: Vec<UserRow>, generation: u64) {
        self.put(generation, |e| {
            e.peers.insert(unix_user.to_owned(), (rows, Instant::now()));
        });
    }

    /// Drops everything cached about one account (it changed), and every
    /// peer entry (a registration changes who a Unix user is).
    pub fn forget(&self, id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.sessions.retain(|_, (_, u, _)| u.id != id);
            entries.peers.clear();
        }
    }

    /// Called by the listener: `true` once it listens, `false` when its
    /// connection is gone. Either way the cache starts empty.
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            *entries = Entries::default();
        }
    }
}

/// What the host admin does to a forgotten password.
#[derive(Clone, Debug)]
pub enum PasswordReset {
    /// Sets this password.
    To(String),
    /// Makes a one-time code the member redeems with `gpures passwd --code`.
    Code,
}

impl Service {
    /// Loads the token signing keys, creating the first one on a new
    /// database and deleting retired keys whose tokens have all expired.
    ///
    /// # Errors
    /// Store failures.
    pub async fn load_keys(&self) -> Result<()> {
        let max = self.settings().session_max;
        let mut tx = self.store().begin().await?;
        keys::lock(&mut tx).await?;
        let mut rows = keys::all(&mut tx).await?;
        if !rows.iter().any(|k| k.retired_at.is_none()) {
            let mut secret = [0u8; 32];
            rand::fill(&mut secret[..]);
            rows.insert(0, keys::insert(&mut tx, &secret).await?);
        }
        keys::prune(&mut tx, Utc::now() - max).await?;
        tx.commit().await?;
        self.use_keys(&rows);
        Ok(())
    }

    /// Reads the keys again (another daemon rotated them).
    async fn reload_keys(&self) -> Result<()> {
        let mut conn = self.store().acquire().await?;
        let rows = keys::all(&mut conn).await?;
        self.use_keys(&rows);
        Ok(())
    }

    fn use_keys(&self, rows: &[keys::KeyRow]) {
        let Some(current) = rows.iter().find(|k| k.retired_at.is_none()) else {
            return;
        };
        let ring: Vec<(i32, &[u8])> = rows.iter().map(|k| (k.id, &k.secret[..])).collect();
        self.inner.auth.set_keys(&ring, current.id);
    }

    /// Makes a new signing key; the others are retired and verify the
    /// tokens they signed until those expire (host admin).
    ///
    /// # Errors
    /// `Forbidden` for anyone else; store failures.
    pub async fn rotate_key(&self, actor: &Actor) -> Result<i32> {
        if !matches!(actor, Actor::HostAdmin { .. }) {
            return Err(Error::Forbidden);
        }
        let max = self.settings().session_max;
        let name = actor.audit_name();
        let mut tx = self.store().begin().await?;
        keys::lock(&mut tx).await?;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret[..]);
        let key = keys::insert(&mut tx, &secret).await?;
        keys::retire_others(&mut tx, key.id).await?;
        keys::prune(&mut tx, Utc::now() - max).await?;
        audit::record(
            &mut tx,
            audit_by(actor, &name),
            AuditAction::AuthRotateKey,
            Target::default(),
        )
        .await?;
        tx.commit().await?;
        Ok(key.id)
    }

    /// The claims of a genuine token, reading the keys again once when it
    /// names a key this daemon has not loaded (at most once a second).
    async fn verify_token(&self, token: &str) -> Result<Claims> {
        match self.inner.auth.verify(token) {
            Err(AuthError::UnknownKey(_)) => {
                if self.inner.key_reload.try_begin() {
                    self.reload_keys().await?;
                }
                Ok(self.inner.auth.verify(token)?)
            }
            other => Ok(other?),
        }
    }

    /// The session a token belongs to, if the token is genuine (the caller
    /// authenticated it already).
    pub async fn session_of(&self, token: &str) -> Option<Uuid> {
        if token.is_empty() {
            return None;
        }
        self.verify_token(token).await.ok().map(|c| c.sid)
    }

    /// The actor behind `token` on a connection from `peer`. An empty token
    /// is peer sign-in: the one active account bound to the peer's Unix
    /// user, where the host allows it. A token must be genuine, of a live
    /// session, and presented from the Unix user it was issued to; a
    /// session used after [`TOUCH_EVERY`] has its expiry moved.
    ///
    /// # Errors
    /// `Unauthenticated` for any bad token or when peer sign-in cannot
    /// decide; `NoAccount` when the peer has no account; `Forbidden` when
    /// its only account is disabled; `Unavailable` when the account cannot
    /// be read.
    pub async fn authenticate(&self, peer: &Peer, token: &str) -> Result<Actor> {
        if token.is_empty() {
            return self.peer_actor(peer).await;
        }
        let claims = self.verify_token(token).await?;
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
        let (mut session, row) = match cache.session(claims.sid) {
            Some(hit) => hit,
            None => {
                let mut conn = self.store().acquire().await?;
                let session = match sessions::by_id(&mut conn, claims.sid).await {
                    Ok(s) => s,
                    Err(StoreError::NotFound) => return Err(Error::Unauthenticated),
                    Err(e) => return Err(e.into()),
                };
                let row = match users::by_id(&mut conn, session.user_id).await {
                    Ok(row) => row,
                    Err(StoreError::NotFound) => return Err(Error::Unauthenticated),
                    Err(e) => return Err(e.into()),
                };
                cache.put_session(session.clone(), row.clone(), generation);
                (session, row)
            }
        };
        let now = Utc::now();
        if row.id != id
            || row.disabled
            || row.token_version != claims.ver
            || row.unix_user != claims.unix_user
            || session.user_id != row.id
            || session.unix_user != claims.unix_user
            || !session.is_live(now)
        {
            return Err(Error::Unauthenticated);
        }
        if now - session.last_used_at > TOUCH_EVERY.min(self.settings().session_idle / 2) {
            let until = (now + self.settings().session_idle)
                .min(session.created_at + self.settings().session_max);
            let generation = cache.generation();
            let mut conn = self.store().acquire().await?;
            session = match sessions::touch(&mut conn, session.id, until).await {
                Ok(s) => s,
                Err(StoreError::NotFound) => return Err(Error::Unauthenticated),
                Err(e) => return Err(e.into()),
            };
            cache.put_session(session, row.clone(), generation);
        }
        Ok(Actor::signed_in(row.info()))
    }

    /// Peer sign-in: the one account bound to the peer's Unix user.
    async fn peer_actor(&self, peer: &Peer) -> Result<Actor> {
        if !self.settings().peer_login {
            return Err(Error::Unauthenticated);
        }
        // Exactly one account, and active: a Unix user shared by several
        // accounts (even with all but one disabled) signs in by password.
        let rows = self.accounts_of(&peer.unix_user).await?;
        match rows.as_slice() {
            [one] if !one.disabled => Ok(Actor::signed_in(one.info())),
            [_] => Err(Error::Forbidden),
            [] => Err(Error::NoAccount(peer.unix_user.clone())),
            _ => Err(Error::Unauthenticated),
        }
    }

    /// The accounts bound to `unix_user`, through the cache.
    async fn accounts_of(&self, unix_user: &str) -> Result<Vec<UserRow>> {
        let cache = &self.inner.accounts;
        if let Some(rows) = cache.peer(unix_user) {
            return Ok(rows);
        }
        let generation = cache.generation();
        let mut conn = self.store().acquire().await?;
        let rows = users::of_unix_user(&mut conn, unix_user).await?;
        cache.put_peer(unix_user, rows.clone(), generation);
        Ok(rows)
    }

    /// Creates a member account bound to the caller's Unix user. The
    /// password may be empty where peer sign-in is on.
    ///
    /// # Errors
    /// Invalid fields, an email already registered, store failures.
    pub async fn register(&self, peer: &Peer, req: RegisterRequest) -> Result<UserInfo> {
        let email = validate::email(&req.email)?;
        let name = validate::display_name(&req.display_name)?;
        let hash = if req.password.is_empty() && self.settings().peer_login {
            String::new()
        } else {
            validate::new_password(&req.password)?;
            let _queued = self
                .inner
                .auth
                .queues()
                .enter(peer.uid, self.settings().hash_queue_per_user)?;
            self.inner.auth.hash_password(req.password).await?
        };
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
                            "this Unix user already has an account ({}): use it \
                             (a shared lab account needs [auth] accounts_per_unix_user raised \
                             by the host admin)",
                            emails.join(", ")
                        ),
                    ));
                }
                if hash.is_empty() && !bound.is_empty() {
                    return Err(Error::invalid(
                        "password",
                        "a second account of one Unix user needs a password (peer sign-in \
                         cannot tell the two apart)",
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
                store::notify_user(&mut tx, row.id).await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        self.inner.accounts.forget(row.id);
        tracing::info!(user_id = row.id, unix_user = %peer.unix_user, "user registered");
        Ok(row.info())
    }

    /// Checks a password and starts a session usable from the bound Unix
    /// user. An empty `email` means the one account bound to the caller.
    ///
    /// # Errors
    /// `Unauthenticated` for a wrong email or password or another Unix user
    /// (one answer for all three), `Throttled` while the email is locked out
    /// or the caller's hashing queue is full, `Forbidden` for a disabled
    /// account.
    pub async fn login(&self, peer: &Peer, email: String, password: String) -> Result<LoginReply> {
        let auth = &self.inner.auth;
        let email = if email.trim().is_empty() {
            self.bound_email(peer).await?
        } else {
            email
        };
        if !validate::login_fits(&email, &password) {
            return Err(Error::Unauthenticated);
        }
        let email = email.trim().to_owned();
        let _queued = auth
            .queues()
            .enter(peer.uid, self.settings().hash_queue_per_user)?;
        let attempt = self.password_attempt(peer, &email)?;
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
        let (token, expires_at) = self.start_session(&row).await?;
        Ok(LoginReply {
            token,
            expires_at,
            user: row.info(),
        })
    }

    /// Starts a password check on `key` (an email) by the peer, throttled
    /// per email and per Unix user ([`super::auth::Throttle`]).
    fn password_attempt<'a>(&'a self, peer: &Peer, key: &str) -> Result<super::auth::Attempt<'a>> {
        let per_minute = self.settings().failed_logins_per_minute;
        Ok(self
            .inner
            .auth
            .throttle()
            .begin(key, peer.uid, per_minute)?)
    }

    /// The email of the one account bound to the peer (login without one).
    async fn bound_email(&self, peer: &Peer) -> Result<String> {
        let rows = self.accounts_of(&peer.unix_user).await?;
        match rows.as_slice() {
            [] => Err(Error::NoAccount(peer.unix_user.clone())),
            [one] => Ok(one.email.clone()),
            _ => Err(Error::invalid(
                "email",
                "this Unix user has several accounts: say which with --email",
            )),
        }
    }

    /// Writes a new session for `row` and signs its token with the newest
    /// key (read again if another daemon rotated). Returns the token and the
    /// latest it can be used.
    async fn start_session(&self, row: &UserRow) -> Result<(String, DateTime<Utc>)> {
        let mut conn = self.store().acquire().await?;
        if keys::current_id(&mut conn).await? != self.inner.auth.current_key() {
            self.reload_keys().await?;
        }
        let now = Utc::now();
        let settings = self.settings();
        let sid = Uuid::new_v4();
        sessions::insert(
            &mut conn,
            sid,
            row.id,
            &row.unix_user,
            &settings.host,
            now + settings.session_idle,
        )
        .await?;
        let cap = now + settings.session_max;
        let token = self
            .inner
            .auth
            .issue(row.id, &row.unix_user, row.token_version, sid, cap)?;
        Ok((token, cap))
    }

    /// Ends one of the actor's sessions: `which`, else `current` (the
    /// session of the token the call came with).
    ///
    /// # Errors
    /// `Invalid` when signed in by the Unix user with no session named;
    /// `NotFound` for a session that is not the actor's or already ended.
    pub async fn end_session(
        &self,
        actor: &Actor,
        current: Option<Uuid>,
        which: Option<Uuid>,
    ) -> Result<()> {
        let user = actor.account()?.clone();
        let Some(sid) = which.or(current) else {
            return Err(Error::invalid(
                "session",
                "you are signed in by your Unix user (peer sign-in): there is no session to end",
            ));
        };
        let actor = actor.clone();
        let svc = self.clone();
        self.transaction(async move {
            let mut tx = svc.store().begin().await?;
            sessions::revoke(&mut tx, user.id, sid)
                .await
                .map_err(Error::not_found(Entity::Session))?;
            audit_user(&mut tx, &actor, AuditAction::UserLogout, user.id).await?;
            sessions::prune(&mut tx, SESSIONS_KEEP_DAYS).await?;
            store::notify_user(&mut tx, user.id).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.inner.accounts.forget(user.id);
        Ok(())
    }

    /// The actor's live sessions, newest first.
    ///
    /// # Errors
    /// `Forbidden` for the host admin; store failures.
    pub async fn sessions(&self, actor: &Actor, current: Option<Uuid>) -> Result<Vec<SessionInfo>> {
        let user = actor.account()?;
        let mut conn = self.store().acquire().await?;
        let rows = sessions::live_of(&mut conn, user.id, SESSIONS_MAX).await?;
        Ok(rows
            .into_iter()
            .map(|s| SessionInfo {
                current: Some(s.id) == current,
                id: s.id,
                host: s.host,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
            })
            .collect())
    }

    /// Sets the actor's password; `old` must be right when one is set. Every
    /// other session of theirs ends.
    ///
    /// # Errors
    /// `Invalid` for a wrong old password (throttled like a login) or a new
    /// one of the wrong length; store failures.
    pub async fn change_password(
        &self,
        actor: &Actor,
        peer: &Peer,
        current: Option<Uuid>,
        old: String,
        new: String,
    ) -> Result<()> {
        let user = actor.account()?.clone();
        validate::new_password(&new)?;
        let auth = &self.inner.auth;
        let _queued = auth
            .queues()
            .enter(peer.uid, self.settings().hash_queue_per_user)?;
        let row = {
            let mut conn = self.store().acquire().await?;
            users::by_id(&mut conn, user.id)
                .await
                .map_err(Error::not_found(Entity::User))?
        };
        if row.has_password() {
            let attempt = self.password_attempt(peer, &row.email)?;
            let ok = auth
                .verify_password(Some(row.password_hash.clone()), old)
                .await;
            attempt.finish(ok);
            if !ok {
                return Err(Error::invalid("old_password", "wrong password"));
            }
        }
        let hash = auth.hash_password(new).await?;
        self.set_password(actor, row.id, hash, current, AuditAction::UserPassword)
            .await?;
        Ok(())
    }

    /// Writes a password hash, ends the account's sessions (but `keep`),
    /// audits `action`, and announces the change.
    async fn set_password(
        &self,
        actor: &Actor,
        id: i64,
        hash: String,
        keep: Option<Uuid>,
        action: AuditAction,
    ) -> Result<UserRow> {
        let actor = actor.clone();
        let svc = self.clone();
        let row = self
            .transaction(async move {
                let mut tx = svc.store().begin().await?;
                let row = users::set_password(&mut tx, id, &hash)
                    .await
                    .map_err(Error::not_found(Entity::User))?;
                sessions::revoke_all(&mut tx, id, keep).await?;
                audit_user(&mut tx, &actor, action, id).await?;
                store::notify_user(&mut tx, id).await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        self.inner.accounts.forget(id);
        Ok(row)
    }

    /// The host admin resets a forgotten password: sets `To(password)`
    /// (every session ends), or makes a one-time code, returned, that the
    /// member redeems from their Unix user within a day.
    ///
    /// # Errors
    /// `Forbidden` for anyone but the host admin; `NotFound`, `Invalid`.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        email: &str,
        how: PasswordReset,
    ) -> Result<Option<String>> {
        if !matches!(actor, Actor::HostAdmin { .. }) {
            return Err(Error::Forbidden);
        }
        validate::lookup_text("email", email)?;
        let row = {
            let mut conn = self.store().acquire().await?;
            users::by_email(&mut conn, email)
                .await
                .map_err(Error::not_found(Entity::User))?
        };
        match how {
            PasswordReset::To(password) => {
                validate::new_password(&password)?;
                let hash = self.inner.auth.hash_password(password).await?;
                self.set_password(actor, row.id, hash, None, AuditAction::UserResetPassword)
                    .await?;
                Ok(None)
            }
            PasswordReset::Code => {
                let code = one_time_code();
                let hash = self.inner.auth.hash_password(code.clone()).await?;
                let mut tx = self.store().begin().await?;
                users::set_reset_code(&mut tx, row.id, &hash, Utc::now() + RESET_CODE_TTL).await?;
                audit_user(&mut tx, actor, AuditAction::UserResetCode, row.id).await?;
                tx.commit().await?;
                Ok(Some(code))
            }
        }
    }

    /// Redeems a one-time code from the host admin: sets `new` as the
    /// password of the peer's account holding the code, ends its sessions.
    ///
    /// # Errors
    /// `Unauthenticated` for a wrong or expired code (throttled like a
    /// login), `Invalid` for a new password of the wrong length.
    pub async fn redeem_reset_code(
        &self,
        peer: &Peer,
        code: String,
        new: String,
    ) -> Result<UserInfo> {
        validate::new_password(&new)?;
        let code = code.trim().to_uppercase().replace('-', "");
        if code.is_empty() || code.chars().count() > 64 {
            return Err(Error::Unauthenticated);
        }
        let auth = &self.inner.auth;
        let _queued = auth
            .queues()
            .enter(peer.uid, self.settings().hash_queue_per_user)?;
        let attempt = self.password_attempt(peer, &format!("code:{}", peer.unix_user))?;
        let rows = {
            let mut conn = self.store().acquire().await?;
            users::of_unix_user(&mut conn, &peer.unix_user).await?
        };
        let now = Utc::now();
        let mut found = None;
        for row in rows
            .into_iter()
            .filter(|r| r.reset_code_expires.is_some_and(|e| e > now))
        {
            if auth
                .verify_password(row.reset_code_hash.clone(), code.clone())
                .await
            {
                found = Some(row);
                break;
            }
        }
        let Some(row) = found else {
            attempt.finish(false);
            return Err(Error::Unauthenticated);
        };
        attempt.finish(true);
        let hash = auth.hash_password(new).await?;
        let actor = Actor::signed_in(row.info());
        let row = self
            .set_password(&actor, row.id, hash, None, AuditAction::UserPassword)
            .await?;
        Ok(row.info())
    }

    /// Changes the actor's display name or email.
    ///
    /// # Errors
    /// `Invalid` for a bad name or email or one already registered.
    pub async fn update_account(&self, actor: &Actor, change: AccountChange) -> Result<UserInfo> {
        let user = actor.account()?.clone();
        let name = change
            .display_name
            .as_deref()
            .map(validate::display_name)
            .transpose()?;
        let email = change.email.as_deref().map(validate::email).transpose()?;
        if name.is_none() && email.is_none() {
            return Err(Error::invalid("account", "nothing to change"));
        }
        let actor = actor.clone();
        let svc = self.clone();
        let row = self
            .transaction(async move {
                let mut tx = svc.store().begin().await?;
                let row = users::set_profile(&mut tx, user.id, name.as_deref(), email.as_deref())
                    .await
                    .map_err(Error::duplicate("email", "already registered"))?;
                audit_user(&mut tx, &actor, AuditAction::UserProfile, user.id).await?;
                store::notify_user(&mut tx, user.id).await?;
                store::notify(&mut tx, &store::Changed::Everything).await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        self.inner.accounts.forget(row.id);
        Ok(row.info())
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
                if matches!(
                    change,
                    UserChange::Disable(_) | UserChange::Bind(_) | UserChange::RevokeTokens
                ) {
                    sessions::revoke_all(&mut tx, row.id, None).await?;
                }
                store::notify_user(&mut tx, row.id).await?;
                store::notify(&mut tx, &store::Changed::Everything).await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        self.inner.accounts.forget(row.id);
        Ok(row.info())
    }
}

/// A one-time code: 12 letters and digits from an alphabet without look-alikes,
/// shown in groups of four.
fn one_time_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw: String = (0..12)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    raw
}
