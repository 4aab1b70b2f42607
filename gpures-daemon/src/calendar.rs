//! Google Calendar one-way sync: [`Calendar`] writes events with
//! `google-calendar3` and a service-account authenticator (yup-oauth2);
//! [`Worker`] delivers the `calendar_outbox`.
//!
//! Invariant 3: a booking never waits for Google. Every change commits an
//! outbox row with it; the worker wakes on every committed change (NOTIFY,
//! so any daemon on the database may deliver), claims one reservation at a
//! time under a transaction-scoped advisory lock plus `FOR UPDATE SKIP LOCKED`
//! on its rows (so daemons never write the same event at once), writes the
//! reservation's *current* state (several pending changes collapse into one
//! write), and deletes the rows only after Google accepted it. Event ids are
//! derived from the reservation id ([`event_id`]): a retry after a crash or a
//! lost reply updates the same event instead of adding one. Transient
//! failures (429, rate-limit 403s, 5xx, timeouts, connection errors) back off
//! exponentially with jitter from 1 s to 5 min; permanent ones (400, 401,
//! other 403s, a bad key) mark the rows failed with the reason and keep them
//! until the daemon restarts (a configuration change) or `calendar resync`.
//!
//! The connector is one concrete type ([`Connector`], rustls, https or plain
//! http) so the hub's generic code is compiled once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use google_calendar3::CalendarHub;
use google_calendar3::api::{Event, EventDateTime, EventExtendedProperties};
use google_calendar3::yup_oauth2;
use gpures_proto::{Reservation, ReservationStatus, text};
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::CalendarConfig;
use crate::store::{Delivery, Store};

/// The one HTTP connector the hub is built with.
pub type Connector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Hub = CalendarHub<Connector>;

/// Private extended property marking our events, with `1`.
pub const MARK: &str = "gpures";
/// Private extended property holding the reservation id.
pub const PROP_RESERVATION: &str = "gpures_reservation";
/// Private extended property holding the daemon host that wrote the event.
pub const PROP_HOST: &str = "gpures_host";

const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum CalendarError {
    #[error(
        "Google Calendar sync is turned off: set GOOGLE_CALENDAR_ENABLED=true (or [calendar] enabled = true)"
    )]
    Disabled,
    #[error(
        "no service account key file is configured: set GOOGLE_SERVICE_ACCOUNT_FILE (or [calendar] service_account_file)"
    )]
    NoKeyFile,
    #[error("no calendar id is configured: set GOOGLE_CALENDAR_ID (or [calendar] calendar_id)")]
    NoCalendarId,
    #[error(
        "the service account key file {path} is missing or unreadable ({reason}): download a JSON key for the \
         service account (Google Cloud console → IAM → Service accounts → Keys → Add key → JSON) and make it readable \
         by the daemon's user"
    )]
    KeyFile { path: String, reason: String },
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// Why a write did not happen.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SyncError {
    /// Worth retrying later (rate limits, server errors, timeouts, network).
    #[error("{0}")]
    Retry(String),
    /// Retrying will not help until the configuration changes.
    #[error("{0}")]
    Permanent(String),
}

/// The event id of a reservation: its UUID in lowercase base32hex (digits
/// and `a`–`v`, as Google requires), 26 characters.
pub fn event_id(id: Uuid) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let n = id.as_u128();
    (0..26)
        .rev()
        .map(|i| ALPHABET[((n >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    Deleted,
}

/// A connection to one calendar.
pub struct Calendar {
    hub: Hub,
    calendar_id: String,
    host: String,
    timeout: Duration,
    /// The service account's email, for the "share the calendar" hint.
    pub client_email: String,
}

impl std::fmt::Debug for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calendar")
            .field("calendar_id", &self.calendar_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

fn connector() -> Result<Connector, CalendarError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            CalendarError::Client(format!(
                "no system CA certificates ({e}): apt install ca-certificates"
            ))
        })?;
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

impl Calendar {
    /// Reads the key and builds the authenticated hub. No network yet: the
    /// first call exchanges the token.
    ///
    /// # Errors
    /// Sync is off, settings are missing, the key file is unreadable.
    pub async fn connect(config: &CalendarConfig, host: &str) -> Result<Calendar, CalendarError> {
        if !config.enabled {
            return Err(CalendarError::Disabled);
        }
        let path = config
            .service_account_file
            .as_ref()
            .ok_or(CalendarError::NoKeyFile)?;
        let calendar_id = config
            .calendar_id
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(CalendarError::NoCalendarId)?;
        let key = read_key(path).await?;
        let client_email = key.client_email.clone();
        let connector = connector()?;
        let token_http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, String>(connector.clone());
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::CustomHyperClientBuilder::from(token_http),
        )
        .build()
        .await
        .map_err(|e| CalendarError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut hub = CalendarHub::new(http, auth);
        if let Some(base) = &config.api_base_url {
            let base = base.trim_end_matches('/');
            hub.base_url(format!("{base}/calendar/v3/"));
            hub.root_url(format!("{base}/"));
        }
        Ok(Calendar {
            hub,
            calendar_id,
            host: host.to_owned(),
            timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
            client_email,
        })
    }

    /// The event a reservation should be.
    pub fn event_for(&self, r: &Reservation) -> Event {
        let mut private = HashMap::new();
        private.insert(MARK.to_owned(), "1".to_owned());
        private.insert(PROP_RESERVATION.to_owned(), r.id.to_string());
        private.insert(PROP_HOST.to_owned(), self.host.clone());
        let note = text::sanitize(&r.note);
        let mut description = String::new();
        if !note.is_empty() {
            description.push_str(&note);
            description.push_str("\n\n");
        }
        // The same text whichever daemon writes it, so that daemons of one
        // lab reconciling in turn never rewrite each other's events.
        description.push_str(&format!(
            "{} <{}>\nbooking {}\nreservation {}\nbooked with gpures",
            text::sanitize(&r.user.display_name),
            text::sanitize(&r.user.email),
            r.booking_id,
            r.id,
        ));
        Event {
            id: Some(event_id(r.id)),
            summary: Some(format!(
                "{} · {}",
                text::sanitize(&r.resource_name),
                text::sanitize(&r.user.display_name)
            )),
            description: Some(description),
            start: Some(EventDateTime {
                date_time: Some(r.period.start),
                time_zone: Some("UTC".into()),
                ..EventDateTime::default()
            }),
            end: Some(EventDateTime {
                date_time: Some(r.period.end),
                time_zone: Some("UTC".into()),
                ..EventDateTime::default()
            }),
            status: Some("confirmed".into()),
            extended_properties: Some(EventExtendedProperties {
                private: Some(private),
                shared: None,
            }),
            ..Event::default()
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        call: impl Future<Output = google_calendar3::Result<T>>,
    ) -> Result<T, SyncError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e, what)),
            Err(_) => Err(SyncError::Retry(format!(
                "{what}: no answer within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    /// Makes the event of `r` exist and match it: insert, or update on 409.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn upsert(&self, r: &Reservation) -> Result<Written, SyncError> {
        let event = self.event_for(r);
        let inserted = self
            .timed(
                "insert",
                self.hub
                    .events()
                    .insert(event.clone(), &self.calendar_id)
                    .doit(),
            )
            .await;
        match inserted {
            Ok(_) => Ok(Written::Created),
            Err(SyncError::Permanent(m)) if m.contains("409") => {
                self.timed(
                    "update",
                    self.hub
                        .events()
                        .update(event, &self.calendar_id, &event_id(r.id))
                        .doit(),
                )
                .await?;
                Ok(Written::Updated)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the event of reservation `id`; one already gone counts as done.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn delete(&self, id: Uuid) -> Result<Written, SyncError> {
        match self
            .timed(
                "delete",
                self.hub
                    .events()
                    .delete(&self.calendar_id, &event_id(id))
                    .doit(),
            )
            .await
        {
            Ok(_) => Ok(Written::Deleted),
            Err(SyncError::Permanent(m)) if m.contains("404") || m.contains("410") => {
                Ok(Written::Deleted)
            }
            Err(e) => Err(e),
        }
    }

    /// Our events overlapping `[from, to)`, every page.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn list_managed(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Event>, SyncError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut call = self
                .hub
                .events()
                .list(&self.calendar_id)
                .add_private_extended_property(&format!("{MARK}=1"))
                .time_min(from)
                .time_max(to)
                .single_events(true)
                .max_results(250);
            if let Some(p) = &page {
                call = call.page_token(p);
            }
            let (_, events) = self.timed("list", call.doit()).await?;
            out.extend(events.items.unwrap_or_default());
            match events.next_page_token {
                Some(p) if !p.is_empty() => page = Some(p),
                _ => return Ok(out),
            }
        }
    }

    /// Writes the current state of `r`: its event when active, none when not.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn apply(&self, r: &Reservation) -> Result<Written, SyncError> {
        match r.status {
            ReservationStatus::Active => self.upsert(r).await,
            ReservationStatus::Cancelled => self.delete(r.id).await,
        }
    }

    /// Inserts and deletes a probe event: proves the key, the token exchange,
    /// the calendar id and the write permission, with the fix for each failure.
    ///
    /// # Errors
    /// The first step that failed, with its fix in words.
    pub async fn check(&self) -> Result<(), String> {
        let now = Utc::now();
        let id = Uuid::new_v4();
        let probe = Event {
            id: Some(event_id(id)),
            summary: Some("gpures calendar check (deleted at once)".into()),
            start: Some(EventDateTime {
                date_time: Some(now),
                ..EventDateTime::default()
            }),
            end: Some(EventDateTime {
                date_time: Some(now + TimeDelta::minutes(1)),
                ..EventDateTime::default()
            }),
            ..Event::default()
        };
        let inserted = tokio::time::timeout(
            self.timeout,
            self.hub.events().insert(probe, &self.calendar_id).doit(),
        )
        .await;
        let explain = |e: google_calendar3::Error| -> String {
            let (status, reason) = status_and_reason(&e);
            match status {
                Some(403) => format!(
                    "the calendar {} is not shared with the service account: in Google Calendar open the \
                     calendar's Settings and sharing → Share with specific people → add {} with \
                     \"Make changes to events\" ({reason})",
                    self.calendar_id, self.client_email
                ),
                Some(404) => format!(
                    "the calendar id {} is wrong or the calendar does not exist: find it in Google Calendar → \
                     the calendar's Settings and sharing → Integrate calendar → Calendar ID ({reason})",
                    self.calendar_id
                ),
                Some(401) => format!(
                    "Google refused the service account's credentials: download a new key ({reason})"
                ),
                _ if matches!(e, google_calendar3::Error::MissingToken(_)) => format!(
                    "could not get a token for the service account (is the key valid, the Calendar API enabled \
                     for its project, and the network to oauth2.googleapis.com open?): {e}"
                ),
                _ => format!("writing a test event failed: {e}"),
            }
        };
        match inserted {
            Err(_) => {
                return Err(format!(
                    "Google did not answer within {} s",
                    self.timeout.as_secs()
                ));
            }
            Ok(Err(e)) => return Err(explain(e)),
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout(
            self.timeout,
            self.hub
                .events()
                .delete(&self.calendar_id, &event_id(id))
                .doit(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the test event was written but deleting it failed: {}",
                explain(e)
            )),
            Err(_) => Err("deleting the test event got no answer".into()),
        }
    }
}

async fn read_key(path: &Path) -> Result<yup_oauth2::ServiceAccountKey, CalendarError> {
    let err = |reason: String| CalendarError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not a service account key: {e}")))
}

/// The HTTP status and Google's error reason of a failed call.
fn status_and_reason(e: &google_calendar3::Error) -> (Option<u16>, String) {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: Option<u16>,
        message: Option<String>,
        #[serde(default)]
        errors: Vec<Detail>,
    }
    #[derive(Deserialize)]
    struct Detail {
        reason: Option<String>,
    }
    match e {
        google_calendar3::Error::BadRequest(v) => match serde_json::from_value::<Body>(v.clone()) {
            Ok(b) => {
                let reason = b
                    .error
                    .errors
                    .first()
                    .and_then(|d| d.reason.clone())
                    .or(b.error.message)
                    .unwrap_or_default();
                (b.error.code, reason)
            }
            Err(_) => (None, v.to_string()),
        },
        google_calendar3::Error::Failure(resp) => {
            (Some(resp.status().as_u16()), resp.status().to_string())
        }
        _ => (None, e.to_string()),
    }
}

/// Sorts a failure into retry-later or give-up.
fn classify(e: google_calendar3::Error, what: &str) -> SyncError {
    let (status, reason) = status_and_reason(&e);
    let msg = |s: &str| format!("{what}: {s}");
    match (status, &e) {
        (Some(429), _) => SyncError::Retry(msg(&format!("429 rate limited ({reason})"))),
        (Some(403), _)
            if reason.contains("rateLimitExceeded") || reason.contains("userRateLimitExceeded") =>
        {
            SyncError::Retry(msg(&format!("403 {reason}")))
        }
        (Some(s), _) if s >= 500 => SyncError::Retry(msg(&format!("{s} server error ({reason})"))),
        (Some(s), _) => SyncError::Permanent(msg(&format!("{s} {reason}"))),
        (None, google_calendar3::Error::HttpError(_) | google_calendar3::Error::Io(_)) => {
            SyncError::Retry(msg(&format!("connection error: {e}")))
        }
        (None, google_calendar3::Error::MissingToken(_)) => {
            SyncError::Retry(msg(&format!("no access token: {e}")))
        }
        (None, google_calendar3::Error::JsonDecodeError(..)) => {
            SyncError::Retry(msg(&format!("unreadable answer: {e}")))
        }
        (None, _) => SyncError::Permanent(msg(&e.to_string())),
    }
}

/// The delay before attempt `attempts + 1`: `first` (1 s) doubling to
/// 5 min, ±25 %.
pub fn backoff(first: Duration, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    let base = first.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    base.mul_f64(jitter).min(BACKOFF_MAX)
}

/// What a reconciliation changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
}

fn same_event(have: &Event, want: &Event) -> bool {
    let t = |e: &Option<EventDateTime>| e.as_ref().and_then(|d| d.date_time);
    have.summary == want.summary
        && have.description == want.description
        && t(&have.start) == t(&want.start)
        && t(&have.end) == t(&want.end)
        && have.status.as_deref().unwrap_or("confirmed") == "confirmed"
}

/// Makes the calendar equal to the database over `[from, to)`: missing events
/// created, changed ones updated, events of cancelled or unknown
/// reservations deleted.
///
/// # Errors
/// The first write or read that failed.
pub async fn reconcile(
    cal: &Calendar,
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Reconciled, String> {
    let active = store
        .active_in_window(gpures_proto::Period {
            start: from,
            end: to,
        })
        .await
        .map_err(|e| e.to_string())?;
    let events = cal
        .list_managed(from, to)
        .await
        .map_err(|e| e.to_string())?;
    let mut report = Reconciled::default();
    let mut seen = std::collections::HashSet::new();
    for ev in &events {
        let rid = ev
            .extended_properties
            .as_ref()
            .and_then(|p| p.private.as_ref())
            .and_then(|p| p.get(PROP_RESERVATION))
            .and_then(|s| Uuid::parse_str(s).ok());
        match rid.and_then(|id| active.iter().find(|r| r.id == id)) {
            Some(r) if ev.id.as_deref() == Some(event_id(r.id).as_str()) => {
                seen.insert(r.id);
                if same_event(ev, &cal.event_for(r)) {
                    report.unchanged += 1;
                } else {
                    cal.upsert(r).await.map_err(|e| e.to_string())?;
                    tracing::info!(event = %event_id(r.id), "Calendar event updated: {}", event_id(r.id));
                    report.updated += 1;
                }
            }
            _ => {
                let Some(id) = ev.id.clone() else { continue };
                match cal
                    .timed(
                        "delete",
                        cal.hub.events().delete(&cal.calendar_id, &id).doit(),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(SyncError::Permanent(m)) if m.contains("404") || m.contains("410") => {}
                    Err(e) => return Err(e.to_string()),
                }
                tracing::info!(event = %id, "Calendar event deleted: {id}");
                report.deleted += 1;
            }
        }
    }
    // Missing from the calendar (never written, or deleted by hand: then the
    // insert meets the deleted event's id and revives it by an update).
    for r in active.iter().filter(|r| !seen.contains(&r.id)) {
        cal.upsert(r).await.map_err(|e| e.to_string())?;
        report.created += 1;
        tracing::info!(event = %event_id(r.id), "Calendar event created: {}", event_id(r.id));
    }
    Ok(report)
}

/// Delivers the outbox.
pub struct Worker;

impl Worker {
    /// Starts delivering. Wakes on every change `changes` reports, when the
    /// next retry is due, and for the periodic reconciliation; ends when
    /// `shutdown` turns true.
    pub fn spawn(
        cal: Arc<Calendar>,
        store: Store,
        mut changes: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
        writes_per_sec: f64,
        reconcile_every: Duration,
        retry_first: Duration,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            // A restart is how configuration changes arrive: give failed rows
            // another chance.
            if let Err(e) = store.calendar_retry_failed().await {
                tracing::warn!(error = %e, "cannot reset failed calendar rows");
            }
            let spacing = Duration::from_secs_f64(1.0 / writes_per_sec.max(0.1));
            let mut last_write = tokio::time::Instant::now() - spacing;
            let mut next_reconcile = tokio::time::Instant::now() + reconcile_every;
            loop {
                let wait = match deliver_due(
                    &cal,
                    &store,
                    spacing,
                    retry_first,
                    &mut last_write,
                    &mut shutdown,
                )
                .await
                {
                    // Delivered something: there may be more right away.
                    Ok(Progress { delivered, .. }) if delivered > 0 => Duration::ZERO,
                    Ok(Progress { next_due, .. }) => next_due
                        .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                        .unwrap_or(Duration::from_secs(60))
                        // Rows another daemon holds: look again shortly.
                        .max(Duration::from_millis(200)),
                    Err(e) => {
                        tracing::warn!(error = %e, "calendar outbox unavailable");
                        Duration::from_secs(2)
                    }
                };
                if tokio::time::Instant::now() >= next_reconcile {
                    let now = Utc::now();
                    match reconcile(
                        &cal,
                        &store,
                        now - TimeDelta::days(1),
                        now + TimeDelta::days(14),
                    )
                    .await
                    {
                        Ok(r) => tracing::info!(?r, "calendar reconciled"),
                        Err(e) => tracing::warn!(error = %e, "Failed to reconcile the calendar"),
                    }
                    next_reconcile = tokio::time::Instant::now() + reconcile_every;
                }
                if wait.is_zero() {
                    if *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
                let wait =
                    wait.min(next_reconcile.saturating_duration_since(tokio::time::Instant::now()));
                tokio::select! {
                    _ = crate::shutdown_requested(&mut shutdown) => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// What one delivery pass did.
struct Progress {
    delivered: usize,
    next_due: Option<DateTime<Utc>>,
}

/// Delivers every due reservation once.
async fn deliver_due(
    cal: &Calendar,
    store: &Store,
    spacing: Duration,
    retry_first: Duration,
    last_write: &mut tokio::time::Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Progress, crate::store::StoreError> {
    let mut delivered = 0;
    for rid in store.calendar_due(100).await? {
        if *shutdown.borrow() {
            break;
        }
        let Some(claim) = store.calendar_claim(rid).await? else {
            continue;
        };
        // The client-side rate limit.
        tokio::time::sleep_until(*last_write + spacing).await;
        *last_write = tokio::time::Instant::now();
        let outcome = match &claim.reservation {
            Some(r) => cal.apply(r).await,
            None => cal.delete(rid).await,
        };
        let id = event_id(rid);
        let delivery = match outcome {
            Ok(w) => {
                match w {
                    Written::Created => tracing::info!(event = %id, "Calendar event created: {id}"),
                    Written::Updated => tracing::info!(event = %id, "Calendar event updated: {id}"),
                    Written::Deleted => tracing::info!(event = %id, "Calendar event deleted: {id}"),
                }
                Delivery::Done
            }
            Err(SyncError::Retry(m)) => {
                tracing::warn!(event = %id, "Failed to sync calendar event {id}, will retry: {m}");
                Delivery::Retry(m, backoff(retry_first, claim.attempts))
            }
            Err(SyncError::Permanent(m)) => {
                tracing::error!(event = %id, "Failed to sync calendar event {id}: {m}");
                Delivery::Failed(m)
            }
        };
        claim.finish(delivery).await?;
        delivered += 1;
    }
    Ok(Progress {
        delivered,
        next_due: store.calendar_next_due().await?,
    })
}
