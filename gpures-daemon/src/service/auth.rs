//! Passwords, tokens and login throttling: [`Auth`].
//!
//! Passwords are hashed with argon2id (OWASP: m=19456 KiB, t=2, p=1) on a
//! blocking thread so a login never stalls the runtime. Tokens are JWTs signed
//! with HS256 and 256-bit keys kept in the database (`signing_keys`), so
//! every daemon sharing it accepts the tokens of the others; the header's
//! `kid` names the key. Verification pins the algorithm and checks `exp`,
//! `iat`, `iss`, `aud`; the caller then checks the session, the token version
//! and the Unix user against the database and the connection ([`Claims`]).
//!
//! Failed logins are throttled per email ([`Throttle`]), known or not, so the
//! answer never tells whether an account exists; attempts being checked count
//! too. Each Unix user also has a budget of failed password checks per
//! minute over all emails, so spraying made-up emails cannot keep a hashing
//! core busy, and a bounded queue in front of the hashing threads
//! ([`HashQueues`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm as ArgonAlgorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// `iss` of every token: this daemon software.
pub const ISSUER: &str = "gpures-daemon";
/// `aud` of every token: the gpures clients.
pub const AUDIENCE: &str = "gpures";
/// Failures allowed before the delay starts.
const FREE_FAILURES: u32 = 5;
/// The delay doubles with each failure past [`FREE_FAILURES`], up to this.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Entries kept by the throttle: a bound on memory under an email-spraying attack.
const THROTTLE_MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("invalid token")]
    InvalidToken,
    /// Signed with a key this daemon has not loaded (another daemon may
    /// have rotated): reload the keys and verify again.
    #[error("token signed with unknown key {0}")]
    UnknownKey(i32),
    #[error("no signing key loaded")]
    NoKey,
    #[error("too many failed logins; retry in {0:?}")]
    Throttled(Duration),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub type Result<T> = std::result::Result<T, AuthError>;

/// What a token says. `sub` is the user id; `unix_user` the account it may be
/// used from; `ver` the user's token version when it was issued; `sid` the
/// session it belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub aud: String,
    pub unix_user: String,
    pub ver: i32,
    pub sid: Uuid,
}

/// Token signing and verification, password hashing and the login throttle.
/// Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

/// The signing keys by id, and the one that signs.
#[derive(Default)]
struct Keyring {
    current: Option<i32>,
    keys: HashMap<i32, (EncodingKey, DecodingKey)>,
}

struct Inner {
    keyring: RwLock<Keyring>,
    validation: Validation,
    /// A hash of a random password, verified against when the email is
    /// unknown so that both cases cost the same.
    dummy_hash: String,
    throttle: Throttle,
    /// Password checks waiting, per Unix user.
    queues: HashQueues,
    /// Password hashes computed at once: at most half the cores, so that a
    /// burst of logins never starves the threads serving other calls.
    hashing: tokio::sync::Semaphore,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("keys", &"<redacted>").finish()
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth::new()
    }
}

impl Auth {
    /// An `Auth` with no keys yet: the service loads them from the database
    /// ([`Auth::set_keys`]).
    pub fn new() -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let dummy = format!("{:x}", rand::random::<u128>());
        let dummy_hash = hash_password_now(&dummy).unwrap_or_default();
        Auth {
            inner: Arc::new(Inner {
                keyring: RwLock::new(Keyring::default()),
                validation,
                dummy_hash,
                throttle: Throttle::default(),
                queues: HashQueues::default(),
                hashing: tokio::sync::Semaphore::new(crate::host::unix::half_the_cores()),
            }),
        }
    }

    /// An `Auth` whose one key, id `kid`, is `secret` (tests).
    pub fn with_secret(kid: i32, secret: &[u8]) -> Auth {
        let auth = Auth::new();
        auth.set_keys(&[(kid, secret)], kid);
        auth
    }

    /// Replaces the keyring: `keys` by id, `current` signs.
    pub fn set_keys(&self, keys: &[(i32, &[u8])], current: i32) {
        let ring = Keyring {
            current: Some(current),
            keys: keys
                .iter()
                .map(|(id, secret)| {
                    (
                        *id,
                        (
                            EncodingKey::from_secret(secret),
                            DecodingKey::from_secret(secret),
                        ),
                    )
                })
                .collect(),
        };
        if let Ok(mut current) = self.inner.keyring.write() {
            *current = ring;
        }
    }

    /// The id of the key that signs, if any is loaded.
    pub fn current_key(&self) -> Option<i32> {
        self.inner.keyring.read().ok().and_then(|r| r.current)
    }

    /// Issues a token for user `id` in session `sid`, usable from
    /// `unix_user` until `exp`, while the session lives and `token_version`
    /// is not bumped.
    ///
    /// # Errors
    /// No key is loaded.
    pub fn issue(
        &self,
        id: i64,
        unix_user: &str,
        token_version: i32,
        sid: Uuid,
        exp: DateTime<Utc>,
    ) -> Result<String> {
        let now = Utc::now();
        let claims = Claims {
            sub: id.to_string(),
            exp: exp.timestamp(),
            iat: now.timestamp(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            unix_user: unix_user.to_owned(),
            ver: token_version,
            sid,
        };
        let ring = self.inner.keyring.read().map_err(|_| AuthError::NoKey)?;
        let kid = ring.current.ok_or(AuthError::NoKey)?;
        let (key, _) = ring.keys.get(&kid).ok_or(AuthError::NoKey)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims, key).map_err(|_| AuthError::InvalidToken)
    }

    /// Checks the signature (HS256 only, with the key the header names),
    /// expiry, issuer and audience.
    ///
    /// # Errors
    /// [`AuthError::UnknownKey`] for a key not loaded;
    /// [`AuthError::InvalidToken`] for anything else wrong with the token.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let kid: i32 = header
            .kid
            .as_deref()
            .and_then(|k| k.parse().ok())
            .ok_or(AuthError::InvalidToken)?;
        let ring = self
            .inner
            .keyring
            .read()
            .map_err(|_| AuthError::InvalidToken)?;
        let (_, key) = ring.keys.get(&kid).ok_or(AuthError::UnknownKey(kid))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.inner.validation)
            .map_err(|_| AuthError::InvalidToken)?;
        let claims = data.claims;
        if claims.iat > Utc::now().timestamp() + 60 {
            return Err(AuthError::InvalidToken);
        }
        Ok(claims)
    }

    /// Hashes a password on a blocking thread.
    ///
    /// # Errors
    /// The hasher failed (it cannot with valid parameters).
    pub async fn hash_password(&self, password: String) -> Result<String> {
        let _turn = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let hash = hash_password_now(&password);
            release_freed_memory();
            hash
        })
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))?
    }

    /// Verifies a password on a blocking thread. `hash` of `None` (an unknown
    /// email, or an account without a password) verifies against a dummy
    /// hash, so it takes as long and fails.
    pub async fn verify_password(&self, hash: Option<String>, password: String) -> bool {
        let hash = hash.filter(|h| !h.is_empty());
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let Ok(_turn) = self.inner.hashing.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || {
            let ok = PasswordHash::new(&hash)
                .map(|parsed| {
                    argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            release_freed_memory();
            ok
        })
        .await
        .unwrap_or(false);
        ok && known
    }

    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// The per-user queues in front of the hashing threads.
    pub fn queues(&self) -> &HashQueues {
        &self.inner.queues
    }
}

/// argon2id allocates 19 MiB per hash; give it back to the OS afterwards,
/// so that an idle daemon stays small.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's first recommendation for argon2id; the values are valid constants.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, params)
}

fn hash_password_now(password: &str) -> Result<String> {
    let hash: PasswordHash = argon2()
        .hash_password(password.as_bytes())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Per-email count of failed logins and the time before which the next
/// attempt is refused. Attempts still being checked count against the free
/// allowance ([`Throttle::begin`]), so a burst of concurrent guesses hashes at
/// most [`FREE_FAILURES`] of them. Per Unix user, a [`Budget`] of failed
/// checks per minute over every email. In memory: a restart forgives, which
/// is fine for a delay whose purpose is to make guessing slow.
#[derive(Default)]
pub struct Throttle {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Attempts>,
    by_uid: HashMap<u32, Budget>,
}

/// A Unix user's failed password checks: a bucket of `size` that refills
/// at `size` a minute. An attempt takes one when it begins and gives it
/// back unless it fails, so checks in flight count and successes cost
/// nothing.
#[derive(Clone, Copy)]
struct Budget {
    left: f64,
    size: f64,
    at: Instant,
}

impl Budget {
    fn refill(&mut self, now: Instant) {
        let minutes = now.saturating_duration_since(self.at).as_secs_f64() / 60.0;
        self.left = (self.left + minutes * self.size).min(self.size);
        self.at = now;
    }
}

#[derive(Clone, Copy, Default)]
struct Attempts {
    failures: u32,
    /// Attempts begun and not yet finished.
    in_flight: u32,
    locked_until: Option<Instant>,
}

/// One login attempt being checked; [`Attempt::finish`] records how it
/// ended. Dropped unfinished (the check itself failed, say the database was
/// down), it only leaves the count of attempts in flight.
#[must_use = "finish the attempt"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    key: String,
    uid: u32,
    finished: bool,
}

impl Attempt<'_> {
    /// Records the outcome: see [`Throttle::record`].
    pub fn finish(mut self, success: bool) {
        self.finished = true;
        self.throttle.record(&self.key, self.uid, Some(success));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.throttle.record(&self.key, self.uid, None);
        }
    }
}

impl Throttle {
    /// Starts an attempt for `email` by the Unix user `uid`, unless the email
    /// is locked out, as many attempts are in flight as failures are still
    /// free, or `uid` has used its `per_minute` failed checks (attempts in
    /// flight included).
    ///
    /// # Errors
    /// [`AuthError::Throttled`] with the time left.
    pub fn begin(&self, email: &str, uid: u32, per_minute: u32) -> Result<Attempt<'_>> {
        let key = email.to_lowercase();
        let Ok(mut entries) = self.entries.lock() else {
            return Err(AuthError::Throttled(Duration::from_secs(1)));
        };
        let Entries { by_key, by_uid } = &mut *entries;
        let now = Instant::now();
        if by_key.len() >= THROTTLE_MAX_ENTRIES {
            by_key.retain(|_, a| a.in_flight > 0 || a.locked_until.is_some_and(|u| u > now));
        }
        if by_uid.len() >= THROTTLE_MAX_ENTRIES {
            by_uid.retain(|_, b| {
                b.refill(now);
                b.left < b.size
            });
        }
        let size = f64::from(per_minute.max(1));
        let budget = by_uid.entry(uid).or_insert(Budget {
            left: size,
            size,
            at: now,
        });
        budget.size = size;
        budget.refill(now);
        if budget.left < 1.0 {
            let wait = (1.0 - budget.left) / size * 60.0;
            return Err(AuthError::Throttled(Duration::from_secs_f64(wait)));
        }
        let a = by_key.entry(key.clone()).or_default();
        if let Some(until) = a.locked_until
            && until > now
        {
            return Err(AuthError::Throttled(until - now));
        }
        // Before the lockout, attempts being checked use up the free
        // failures; after it, one attempt at a time as each delay ends.
        let room = if a.failures < FREE_FAILURES {
            a.failures + a.in_flight < FREE_FAILURES
        } else {
            a.in_flight == 0
        };
        if !room {
            return Err(AuthError::Throttled(Duration::from_secs(1)));
        }
        a.in_flight += 1;
        budget.left -= 1.0;
        Ok(Attempt {
            throttle: self,
            key,
            uid,
            finished: false,
        })
    }

    /// Ends an attempt on `key` by `uid`: a success forgets the email's
    /// failures, a failure counts (after [`FREE_FAILURES`] the delay starts
    /// at 1 s and doubles, up to 15 minutes), `None` (abandoned) only ends
    /// it. Anything but a failure gives `uid` its check back.
    fn record(&self, key: &str, uid: u32, success: Option<bool>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let Entries { by_key, by_uid } = &mut *entries;
        if success != Some(false)
            && let Some(b) = by_uid.get_mut(&uid)
        {
            b.left = (b.left + 1.0).min(b.size);
        }
        let Some(a) = by_key.get_mut(key) else {
            return;
        };
        a.in_flight = a.in_flight.saturating_sub(1);
        let Some(success) = success else {
            if a.in_flight == 0 && a.failures == 0 {
                by_key.remove(key);
            }
            return;
        };
        if success {
            if a.in_flight == 0 {
                by_key.remove(key);
            } else {
                a.failures = 0;
                a.locked_until = None;
            }
            return;
        }
        a.failures = a.failures.saturating_add(1);
        if a.failures >= FREE_FAILURES {
            let exp = (a.failures - FREE_FAILURES).min(20);
            let delay = Duration::from_secs(1u64 << exp).min(MAX_DELAY);
            a.locked_until = Some(Instant::now() + delay);
        }
    }
}

/// Password checks waiting per Unix user, bounded: one user's burst of
/// logins is refused at once instead of queueing before everyone else's.
#[derive(Debug, Default)]
pub struct HashQueues {
    waiting: Mutex<HashMap<u32, usize>>,
}

/// A place in a user's hashing queue, given back on drop.
pub struct QueueSlot<'a> {
    queues: &'a HashQueues,
    uid: u32,
}

impl HashQueues {
    /// Takes a place for `uid` if fewer than `max` of theirs wait.
    ///
    /// # Errors
    /// [`AuthError::Throttled`] when the user's queue is full.
    pub fn enter(&self, uid: u32, max: usize) -> Result<QueueSlot<'_>> {
        let Ok(mut waiting) = self.waiting.lock() else {
            return Err(AuthError::Throttled(Duration::from_secs(1)));
        };
        let n = waiting.entry(uid).or_default();
        if *n >= max {
            return Err(AuthError::Throttled(Duration::from_secs(1)));
        }
        *n += 1;
        Ok(QueueSlot { queues: self, uid })
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.queues.waiting.lock()
            && let Some(n) = waiting.get_mut(&self.uid)
        {
            *n -= 1;
            if *n == 0 {
                waiting.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::with_secret(1, &[7u8; 32])
    }

    #[test]
    fn issued_tokens_verify() {
        let a = auth();
        let sid = Uuid::new_v4();
        let token = a
            .issue(
                42,
                "alice",
                3,
                sid,
                Utc::now() + chrono::TimeDelta::hours(1),
            )
            .expect("issue");
        let claims = a.verify(&token).expect("verify");
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.sid, sid);
        assert_eq!(claims.unix_user, "alice");
        assert_eq!(claims.ver, 3);
    }

    fn forge(claims: &Claims, alg: Algorithm, key: &[u8]) -> String {
        let mut header = Header::new(alg);
        header.kid = Some("1".into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).expect("encode")
    }

    fn good_claims() -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: "1".into(),
            exp: now + 600,
            iat: now,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            unix_user: "root".into(),
            ver: 1,
            sid: Uuid::nil(),
        }
    }

    #[test]
    fn forged_tokens_are_refused() {
        let a = auth();
        assert!(
            a.verify(&forge(&good_claims(), Algorithm::HS256, &[7u8; 32]))
                .is_ok()
        );
        // Another key.
        assert!(
            a.verify(&forge(&good_claims(), Algorithm::HS256, &[8u8; 32]))
                .is_err()
        );
        // Another HMAC algorithm with the right key.
        assert!(
            a.verify(&forge(&good_claims(), Algorithm::HS512, &[7u8; 32]))
                .is_err()
        );
        // Wrong audience and issuer.
        let mut c = good_claims();
        c.aud = "someone-else".into();
        assert!(a.verify(&forge(&c, Algorithm::HS256, &[7u8; 32])).is_err());
        let mut c = good_claims();
        c.iss = "evil".into();
        assert!(a.verify(&forge(&c, Algorithm::HS256, &[7u8; 32])).is_err());
        // Expired.
        let mut c = good_claims();
        c.exp = Utc::now().timestamp() - 120;
        assert!(a.verify(&forge(&c, Algorithm::HS256, &[7u8; 32])).is_err());
        // alg: none, built by hand (the library refuses to make one).
        let header = base64_url(br#"{"alg":"none","typ":"JWT","kid":"1"}"#);
        let body = base64_url(
            serde_json::to_string(&good_claims())
                .expect("json")
                .as_bytes(),
        );
        assert!(a.verify(&format!("{header}.{body}.")).is_err());
        assert!(a.verify("garbage").is_err());
    }

    fn base64_url(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// An attempt by a Unix user whose budget never runs out here.
    fn begin<'a>(t: &'a Throttle, email: &str) -> Result<Attempt<'a>> {
        t.begin(email, 1000, 10_000)
    }

    fn fail(t: &Throttle, email: &str) {
        begin(t, email).expect("allowed").finish(false);
    }

    #[test]
    fn throttle_starts_after_five_failures_and_grows() {
        let t = Throttle::default();
        for _ in 0..4 {
            fail(&t, "A@x.org");
        }
        fail(&t, "a@x.org");
        let Err(AuthError::Throttled(d)) = begin(&t, "a@X.org") else {
            panic!("throttled after 5 failures");
        };
        assert!(d <= Duration::from_secs(1));
        // Fast-forward: keep failing as the lock lifts.
        for _ in 0..30 {
            if let Some(a) = t.entries.lock().expect("lock").by_key.get_mut("a@x.org") {
                a.locked_until = None;
            }
            fail(&t, "a@x.org");
        }
        let Err(AuthError::Throttled(d)) = begin(&t, "a@x.org") else {
            panic!("still throttled");
        };
        assert!(d > Duration::from_secs(600) && d <= MAX_DELAY, "{d:?}");
    }

    #[test]
    fn attempts_in_flight_use_up_the_allowance() {
        let t = Throttle::default();
        let running: Vec<Attempt> = (0..FREE_FAILURES)
            .map(|_| begin(&t, "b@x.org").expect("free"))
            .collect();
        assert!(
            begin(&t, "b@x.org").is_err(),
            "a sixth attempt while five are checked waits"
        );
        for a in running {
            a.finish(false);
        }
        assert!(begin(&t, "b@x.org").is_err(), "locked after five failures");
        let ok = Throttle::default();
        begin(&ok, "c@x.org").expect("free").finish(true);
        assert!(ok.entries.lock().expect("lock").by_key.is_empty());
        drop(begin(&ok, "d@x.org").expect("free"));
        assert!(
            ok.entries.lock().expect("lock").by_key.is_empty(),
            "an abandoned attempt leaves nothing behind"
        );
    }

    #[test]
    fn one_unix_users_failures_are_budgeted_over_every_email() {
        let t = Throttle::default();
        // Successes and abandoned attempts cost nothing.
        for i in 0..10 {
            t.begin(&format!("own{i}@x.org"), 1000, 3)
                .expect("budget")
                .finish(true);
            drop(t.begin("own@x.org", 1000, 3).expect("budget"));
        }
        // Failures and attempts in flight do, whatever the email.
        t.begin("spray1@x.org", 1000, 3)
            .expect("budget")
            .finish(false);
        let running = t.begin("spray2@x.org", 1000, 3).expect("budget");
        t.begin("spray3@x.org", 1000, 3)
            .expect("budget")
            .finish(false);
        let Err(AuthError::Throttled(wait)) = t.begin("spray4@x.org", 1000, 3) else {
            panic!("the fourth check of a budget of three is refused");
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "one check comes back every 20 s: {wait:?}"
        );
        assert!(
            t.begin("spray4@x.org", 1001, 3).is_ok(),
            "another Unix user has a budget of their own"
        );
        running.finish(true);
        t.begin("spray5@x.org", 1000, 3)
            .expect("a check that did not fail was given back")
            .finish(false);
        assert!(t.begin("spray6@x.org", 1000, 3).is_err());
        // A minute later the whole budget is back.
        if let Some(b) = t.entries.lock().expect("lock").by_uid.get_mut(&1000) {
            b.at = b.at.checked_sub(Duration::from_secs(60)).expect("uptime");
        }
        for i in 0..3 {
            t.begin(&format!("later{i}@x.org"), 1000, 3)
                .expect("refilled")
                .finish(false);
        }
        assert!(t.begin("later3@x.org", 1000, 3).is_err());
    }

    #[test]
    fn one_users_hashing_queue_is_bounded() {
        let q = HashQueues::default();
        let held: Vec<QueueSlot> = (0..4).map(|_| q.enter(1000, 4).expect("room")).collect();
        assert!(q.enter(1000, 4).is_err());
        assert!(q.enter(1001, 4).is_ok(), "another user has their own queue");
        drop(held);
        assert!(q.enter(1000, 4).is_ok());
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let a = auth();
        let hash = a
            .hash_password("correct horse battery".into())
            .await
            .expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            a.verify_password(Some(hash.clone()), "correct horse battery".into())
                .await
        );
        assert!(
            !a.verify_password(Some(hash), "wrong horse battery".into())
                .await
        );
        assert!(!a.verify_password(None, "anything at all".into()).await);
    }

    #[test]
    fn keys_rotate_and_unknown_keys_are_named() {
        let a = auth();
        let exp = Utc::now() + chrono::TimeDelta::hours(1);
        let old = a.issue(1, "root", 1, Uuid::nil(), exp).expect("issue");
        a.set_keys(&[(2, &[9u8; 32]), (1, &[7u8; 32])], 2);
        let new = a.issue(1, "root", 1, Uuid::nil(), exp).expect("issue");
        assert!(a.verify(&old).is_ok(), "the retired key still verifies");
        assert!(a.verify(&new).is_ok());
        assert_eq!(a.current_key(), Some(2));
        let b = Auth::with_secret(1, &[7u8; 32]);
        assert!(matches!(b.verify(&new), Err(AuthError::UnknownKey(2))));
        assert!(Auth::new().issue(1, "root", 1, Uuid::nil(), exp).is_err());
    }
}
