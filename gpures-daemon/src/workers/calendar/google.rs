//! The Google Calendar client: [`Calendar`] writes events with
//! `google-calendar3` and a service-account authenticator ([`token`](super::token)), and
//! sorts Google's answers into retry-later and give-up ([`SyncError`]).
//! Event ids are derived from the reservation id, or the block id for a
//! maintenance window ([`event_id`]), so a retry after a crash or a lost
//! reply updates the same event instead of adding one.
//!
//! The connector is one concrete type ([`Connector`], rustls, https or plain
//! http) so the hub's generic code is compiled once.
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use google_calendar3::CalendarHub;
use google_calendar3::api::{Event, EventDateTime, EventExtendedProperties};
use gpures_proto::{Block, Reservation, ReservationStatus, text};
use serde::Deserialize;
use thiserror::Error;
use uuid::Uuid;

use super::token::{ServiceAccount, ServiceAccountKey};
use crate::config::CalendarConfig;

/// The one HTTP connector the hub is built with.
pub type Connector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Hub = CalendarHub<Connector>;

/// Private extended property marking our events, with `1`.
pub const MARK: &str = "gpures";
/// Private extended property holding the reservation id.
pub const PROP_RESERVATION: &str = "gpures_reservation";
/// Private extended property holding the block id of a maintenance window.
pub const PROP_BLOCK: &str = "gpures_block";
/// Private extended property holding the daemon host that wrote the event.
pub const PROP_HOST: &str = "gpures_host";

const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The scope every call asks for: read and write the events of calendars the
/// service account can access, shared ones included. The client's defaults
/// for list and get (`calendar.events.owned.readonly`) cover only calendars
/// the account owns, and real Google refuses them on a shared calendar.
const SCOPE: google_calendar3::api::Scope = google_calendar3::api::Scope::Event;

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

/// Why `calendar check` failed, with the fix in words.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct CheckFailed(pub String);

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

pub(crate) fn connector() -> Result<Connector, CalendarError> {
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
        let auth = ServiceAccount::new(&key, token_http).map_err(|e| CalendarError::KeyFile {
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
        // A request waiting for an admin holds its slot: shown, but as
        // tentative, until it is approved (then confirmed) or not (deleted).
        let waiting = if r.pending.is_some() {
            " (waiting for approval)"
        } else {
            ""
        };
        Event {
            id: Some(event_id(r.id)),
            summary: Some(format!(
                "{} · {}{waiting}",
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
            status: Some(
                if r.pending.is_some() {
                    "tentative"
                } else {
                    "confirmed"
                }
                .into(),
            ),
            extended_properties: Some(EventExtendedProperties {
                private: Some(private),
                shared: None,
            }),
            ..Event::default()
        }
    }

    /// The event a block should be: one for all the resources blocked
    /// together, `parts` being its rows (one per resource, not empty).
    pub fn event_for_block(&self, parts: &[Block]) -> Option<Event> {
        let first = parts.first()?;
        let mut private = HashMap::new();
        private.insert(MARK.to_owned(), "1".to_owned());
        private.insert(PROP_BLOCK.to_owned(), first.block_id.to_string());
        private.insert(PROP_HOST.to_owned(), self.host.clone());
        // Sorted here, so the text is the same whichever query gave the parts.
        let mut names: Vec<String> = parts
            .iter()
            .map(|b| text::sanitize(&b.resource_name))
            .collect();
        names.sort();
        let names = names.join(", ");
        let reason = text::sanitize(&first.reason);
        Some(Event {
            id: Some(event_id(first.block_id)),
            summary: Some(format!("Blocked · {names} · {reason}")),
            description: Some(format!(
                "{reason}\n\nNobody can book {names} in this period.\nblocked by {}\nblock {}\nblocked with gpures",
                text::sanitize(&first.created_by),
                first.block_id,
            )),
            start: Some(EventDateTime {
                date_time: Some(first.period.start),
                time_zone: Some("UTC".into()),
                ..EventDateTime::default()
            }),
            end: Some(EventDateTime {
                date_time: Some(first.period.end),
                time_zone: Some("UTC".into()),
                ..EventDateTime::default()
            }),
            status: Some("confirmed".into()),
            // Busy for anyone who checks free/busy against the calendar.
            transparency: Some("opaque".into()),
            extended_properties: Some(EventExtendedProperties {
                private: Some(private),
                shared: None,
            }),
            ..Event::default()
        })
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

    /// Makes the event of `r` exist and match it. When the event is known to
    /// exist (`known`), an update (an insert if Google no longer has it);
    /// else an insert (an update when Google answers 409: it exists).
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn upsert(&self, r: &Reservation, known: bool) -> Result<Written, SyncError> {
        self.upsert_event(self.event_for(r), known).await
    }

    /// Writes the current state of a block: its event while `parts` (the
    /// rows still in force) is not empty, none once it is lifted.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn apply_block(&self, block_id: Uuid, parts: &[Block]) -> Result<Written, SyncError> {
        match self.event_for_block(parts) {
            // Blocks are few and rarely change: no "known" hint, an insert
            // that meets the event turns into an update.
            Some(event) => self.upsert_event(event, false).await,
            None => self.delete(block_id).await,
        }
    }

    async fn upsert_event(&self, event: Event, known: bool) -> Result<Written, SyncError> {
        let id = event.id.clone().unwrap_or_default();
        if known {
            match self
                .timed(
                    "update",
                    self.hub
                        .events()
                        .update(event.clone(), &self.calendar_id, &id)
                        .add_scope(SCOPE)
                        .doit(),
                )
                .await
            {
                Ok(_) => return Ok(Written::Updated),
                Err(SyncError::Permanent(m)) if m.contains("404") => {}
                Err(e) => return Err(e),
            }
        }
        let inserted = self
            .timed(
                "insert",
                self.hub
                    .events()
                    .insert(event.clone(), &self.calendar_id)
                    .add_scope(SCOPE)
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
                        .update(event, &self.calendar_id, &id)
                        .add_scope(SCOPE)
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
        self.delete_event(&event_id(id)).await
    }

    /// Deletes the event `event_id`; one already gone counts as deleted.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn delete_event(&self, event_id: &str) -> Result<Written, SyncError> {
        match self
            .timed(
                "delete",
                self.hub
                    .events()
                    .delete(&self.calendar_id, event_id)
                    .add_scope(SCOPE)
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
            let events = self.list_page(from, to, page.as_deref()).await?;
            out.extend(events.items.unwrap_or_default());
            match events.next_page_token {
                Some(p) if !p.is_empty() => page = Some(p),
                _ => return Ok(out),
            }
        }
    }

    /// One page of our events; a transient failure is tried again (1, 2, 4,
    /// 8 s apart) instead of ending the repair.
    async fn list_page(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: Option<&str>,
    ) -> Result<google_calendar3::api::Events, SyncError> {
        let mut delay = Duration::from_secs(1);
        let mut tries = 0;
        loop {
            tries += 1;
            let mut call = self
                .hub
                .events()
                .list(&self.calendar_id)
                .add_scope(SCOPE)
                .add_private_extended_property(&format!("{MARK}=1"))
                .time_min(from)
                .time_max(to)
                .single_events(true)
                .max_results(250);
            if let Some(p) = page {
                call = call.page_token(p);
            }
            match self.timed("list", call.doit()).await {
                Ok((_, events)) => return Ok(events),
                Err(SyncError::Retry(m)) if tries < 5 => {
                    tracing::warn!(error = %m, "listing the calendar failed; trying the page again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the current state of `r`: its event when active, none when not.
    ///
    /// # Errors
    /// [`SyncError`].
    pub async fn apply(&self, r: &Reservation, known: bool) -> Result<Written, SyncError> {
        match r.status {
            ReservationStatus::Active => self.upsert(r, known).await,
            ReservationStatus::Cancelled => self.delete(r.id).await,
        }
    }

    /// Inserts, reads back, lists and deletes a probe event, with the scope
    /// every call of the worker uses: proves the key, the token exchange, the
    /// calendar id and the read and write permissions, with the fix for each
    /// failure.
    ///
    /// # Errors
    /// The first step that failed, with its fix in words.
    pub async fn check(&self) -> Result<(), CheckFailed> {
        let now = Utc::now();
        let id = Uuid::new_v4();
        let eid = event_id(id);
        let mut private = HashMap::new();
        private.insert(MARK.to_owned(), "1".to_owned());
        let probe = Event {
            id: Some(eid.clone()),
            summary: Some("gpures calendar check (deleted at once)".into()),
            start: Some(EventDateTime {
                date_time: Some(now),
                ..EventDateTime::default()
            }),
            end: Some(EventDateTime {
                date_time: Some(now + TimeDelta::minutes(1)),
                ..EventDateTime::default()
            }),
            extended_properties: Some(EventExtendedProperties {
                private: Some(private),
                shared: None,
            }),
            ..Event::default()
        };
        let events = self.hub.events();
        self.check_step(
            "writing a test event",
            events
                .insert(probe, &self.calendar_id)
                .add_scope(SCOPE)
                .doit(),
        )
        .await?;
        let read = self
            .check_step(
                "reading the test event back",
                events.get(&self.calendar_id, &eid).add_scope(SCOPE).doit(),
            )
            .await;
        let listed = match read {
            Ok(()) => {
                self.check_step(
                    "listing gpures' events",
                    events
                        .list(&self.calendar_id)
                        .add_scope(SCOPE)
                        .add_private_extended_property(&format!("{MARK}=1"))
                        .time_min(now - TimeDelta::minutes(1))
                        .time_max(now + TimeDelta::minutes(2))
                        .max_results(10)
                        .doit(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        // Always try to remove the probe, then report the first failure.
        let deleted = self
            .check_step(
                "deleting the test event",
                events
                    .delete(&self.calendar_id, &eid)
                    .add_scope(SCOPE)
                    .doit(),
            )
            .await;
        listed.and(deleted)
    }

    /// One step of [`Self::check`]: its failure explained with the fix.
    async fn check_step<T>(
        &self,
        what: &str,
        call: impl Future<Output = google_calendar3::Result<T>>,
    ) -> Result<(), CheckFailed> {
        let e = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(CheckFailed(format!(
                    "{what}: Google did not answer within {} s",
                    self.timeout.as_secs()
                )));
            }
        };
        let (status, reason) = status_and_reason(&e);
        let share = format!(
            "in Google Calendar open the calendar's Settings and sharing → Share with specific people → \
             add {} with \"Make changes to events\"",
            self.client_email
        );
        Err(CheckFailed(match (status, reason.as_str()) {
            (Some(403 | 429), "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded") => {
                format!("{what}: Google rate-limited the request ({reason}); try again in a minute")
            }
            (Some(403), _) => format!(
                "{what}: the service account may not do this on {} ({reason}): the calendar is not \
                 shared with it, or only to see events; {share}",
                self.calendar_id
            ),
            (Some(404), _) => format!(
                "{what}: Google does not know the calendar {} for this service account ({reason}): \
                 the id is wrong (Settings and sharing → Integrate calendar → Calendar ID) or the \
                 calendar is not shared with the account at all; {share}",
                self.calendar_id
            ),
            (Some(401), _) => format!(
                "{what}: Google refused the service account's credentials: download a new key ({reason})"
            ),
            _ if matches!(e, google_calendar3::Error::MissingToken(_)) => format!(
                "{what}: could not get a token for the service account (is the key valid, the Calendar \
                 API enabled for its project, and the network to oauth2.googleapis.com open?): {e}"
            ),
            _ => format!("{what} failed: {e}"),
        }))
    }
}

async fn read_key(path: &Path) -> Result<ServiceAccountKey, CalendarError> {
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
        // A stale or revoked access token: the next attempt fetches a new
        // one (a key Google no longer accepts fails at that exchange).
        (Some(401), _) => SyncError::Retry(msg(&format!("401 token refused ({reason})"))),
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
            let text = e.to_string();
            // OAuth errors that a retry cannot fix: the key was deleted or
            // disabled, or the account may not use it.
            if [
                "invalid_grant",
                "invalid_client",
                "unauthorized_client",
                "access_denied",
            ]
            .iter()
            .any(|code| text.contains(code))
            {
                SyncError::Permanent(msg(&format!(
                    "Google refused the service account's key ({text}): the key was deleted or \
                     disabled; create a new JSON key and point GOOGLE_SERVICE_ACCOUNT_FILE at it"
                )))
            } else {
                SyncError::Retry(msg(&format!("no access token: {text}")))
            }
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
